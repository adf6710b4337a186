"""Data-driven saliency pruning: Optimal Brain Damage (LeCun et al. 1990) and the
first-order Taylor criterion (Molchanov et al. 2016/2019).

Both score every weight on `samples` training examples (the model in eval mode, the
run's loss: `compress_(loss=...)` / `[finetune] loss`, auto = cross-entropy for class
targets, MSE for float targets, distillation toward the model before compression for
unlabelled data; batches of any shape, through the batch adapter), then prune the
lowest scores like magnitude pruning does (layer-wise, global, sparsity maps) and
retrain in the fine-tuning phase.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from netshrink.core.batches import as_batches
from netshrink.errors import RecipeError
from netshrink.functional.saliency import batch_grads, fisher_diag, hutchinson_diag, obd_saliency
from netshrink.methods.pruning import ScorePruning
from netshrink.structure.importance import zero_gradient_check
from netshrink.train.losses import BatchLoss


def _batches(data, samples: int, batch_size: int, seed: int):
    """Mini-batches of `samples` examples, as the data's own batches: a fixed random subset
    of a map-style Dataset, else the first `samples` of the data (core.batches)."""
    b = as_batches(data)
    n = b.num_samples()
    if n is not None and not isinstance(b.data, DataLoader) and b.forward is None:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(n, generator=g)[:samples].tolist()
        return b, list(as_batches(Subset(b.data, idx), collate=b.collate).iter(batch_size))
    return b, b.take(samples, batch_size)


@dataclass
class SaliencyPruning(ScorePruning):
    samples: int = 256        # training examples the scores are computed on
    calib_batch: int = 32     # their batch size (not a training batch)
    seed: int = 0

    renamed: ClassVar[dict[str, str]] = {**ScorePruning.renamed, "score_batch": "'calib_batch'"}

    def validate(self):
        super().validate()
        self.check(self.samples >= 1, "samples", "an integer >= 1")
        self.check(self.calib_batch >= 1, "calib_batch", "an integer >= 1")

    def scores(self, sites, model, ctx):
        if ctx.data is None:
            raise RecipeError(f"{self.name}: needs data to score weights (compress_ with data=...)")
        params = [site.tensor for site in sites]   # plain parameters at prepare time
        loss = BatchLoss.of_context(ctx, self.name)
        b, batches = _batches(ctx.data, self.samples, self.calib_batch, self.seed)
        was = model.training
        model.eval()   # dropout / batch-norm statistics fixed while scoring
        try:
            with torch.enable_grad():
                out = self.raw_scores(lambda batch: loss(b, model, batch), params, [(x,) for x in batches])
        finally:
            model.train(was)
        zero_gradient_check(loss, float(sum(float(o.abs().sum()) for o in out)), self.name)
        return out


@dataclass
class OBD(SaliencyPruning):
    """Optimal Brain Damage: prune the weights with the smallest 1/2 h_kk w_k^2.

    >>> ns.create("obd", sparsity=0.9, hessian="fisher", samples=256)
    """

    name = "obd"
    summary = "Optimal Brain Damage: saliency 1/2 h_kk w^2 from a diagonal Fisher / Hutchinson Hessian"
    hessian: Literal["fisher", "hutchinson"] = "fisher"
    probes: int = 4

    def validate(self):
        super().validate()
        self.check(self.probes >= 1, "probes", "an integer >= 1")

    def raw_scores(self, loss_of, params, batches):
        if self.hessian == "fisher":
            h = fisher_diag(loss_of, params, batches)
        else:
            h = hutchinson_diag(loss_of, params, batches, probes=self.probes,
                                generator=torch.Generator().manual_seed(self.seed))
            # The estimate of a positive curvature can come out negative; OBD's
            # saliency assumes h_kk >= 0 at a minimum, so clamp.
            h = [x.clamp_min(0) for x in h]
        return [obd_saliency(p, hessian_diag=hk) for p, hk in zip(params, h)]


@dataclass
class Taylor(SaliencyPruning):
    """First-order Taylor saliency |w dL/dw|, averaged over mini-batches.

    >>> ns.create("taylor", sparsity=0.9, samples=512)
    """

    name = "taylor"
    summary = "first-order Taylor saliency |w * dL/dw| averaged over mini-batches"

    def raw_scores(self, loss_of, params, batches):
        return batch_grads(loss_of, params, batches, absolute_with=params)
