"""Stochastic depth (Huang et al. 2016), a training-time method, then removing residual
blocks for good (depth pruning by rank instead is `depth_prune`, structure/depth_pruning.py).

Training: residual block l (of L, in forward order) survives each mini-batch with
probability p_l = 1 - (l / L) (1 - p_L) (the paper's linear decay, p_L = 0.5); a
dropped block outputs ReLU(shortcut(x)). At test time its residual branch is scaled by
p_l: H = ReLU(p_l f(x) + shortcut(x)). Both are done by a forward hook on the block's
last BatchNorm (f's output), so the module tree is unchanged; finalize folds p_l into
that BatchNorm's affine weights (exact) and removes the hooks.

Compression: with `blocks = k`, finalize then greedily replaces by nn.Identity the k
blocks whose removal costs least of the task metric (measure/metrics.py, auto: accuracy
for classification, MSE for float targets, fidelity to the model before removal for
unlabelled data) on (up to `samples` samples of) the training data, among blocks whose shortcut is the identity (same shape in and out; their input
is post-ReLU, so Identity is exactly "the block dropped"). With `recalibrate`, each
candidate is also tried with BatchNorm statistics re-estimated on the same samples
(the layers after a removed block see inputs of another scale than their running
statistics), keeping whichever scores better there.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from netshrink.core.batches import as_batches
from netshrink.core.context import PrepareContext
from netshrink.core.method import Method
from netshrink.core.submodules import set_submodule
from netshrink.errors import RecipeError, TargetError
from netshrink.measure import metrics
from netshrink.train.loop import predict, predict_positions


def survival_probs(n_blocks: int, *, p_last: float) -> list[float]:
    """p_l = 1 - (l / L)(1 - p_L) for l = 1 .. L."""
    return [1 - (l / n_blocks) * (1 - p_last) for l in range(1, n_blocks + 1)]


def is_residual_block(m: nn.Module) -> bool:
    """A residual basic block (the zoo's ResNet BasicBlock, or any module shaped like it):
    a residual branch ending in the BatchNorm `bn2`, added to `shortcut(x)` (an
    nn.Sequential, empty for the identity)."""
    return isinstance(getattr(m, "bn2", None), nn.BatchNorm2d) and isinstance(getattr(m, "shortcut", None),
                                                                              nn.Sequential)


def residual_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(path, block) of every residual basic block, in forward (module) order."""
    return [(n, m) for n, m in model.named_modules() if is_residual_block(m)]


def removable(block: nn.Module) -> bool:
    """Only a block whose shortcut is the identity can become nn.Identity."""
    return is_residual_block(block) and len(block.shortcut) == 0


@torch.no_grad()
def recalibrate_bn(model: nn.Module, data, *, batch_size: int = 250) -> None:
    """Re-estimate every BatchNorm's running statistics on `data` (no weight changes):
    after a block is removed, the layers after it see inputs of another scale."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    was = model.training
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.train()
    b = as_batches(data)
    for batch in b.iter(batch_size=batch_size):
        b.call(model, batch)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.train(was)


@torch.no_grad()
def removal_order(model: nn.Module, data, *, limit: int | None = None, recalibrate: bool = True,
                  metric="auto") -> list[tuple[str, float]]:
    """Greedy: repeatedly remove the removable block whose absence keeps the best `metric`
    on `data` (measure/metrics.py; fidelity metrics compare with the model as it was before
    any removal). With `recalibrate`, each candidate is also tried with its BatchNorm
    statistics re-estimated on `data`, and the better of the two is kept.
    Returns [(path, the metric on `data` after removing it and all before)]; `model` is
    modified in place (blocks replaced by nn.Identity)."""
    b = as_batches(data)
    dense, y, mask = predict_positions(model, b)
    name = metrics.choose(metric, dense, y, has_reference=True, hidden=metrics.is_hidden_state(model, b))
    sign = 1.0 if metrics.higher_is_better(name, metric) is not False else -1.0

    def value(m: nn.Module) -> float:
        return metrics.compute(name, metric, predict(m, b)[0], y, dense, mask)

    out = []
    while limit is None or len(out) < limit:
        cands = [p for p, blk in residual_blocks(model) if removable(blk)]
        if not cands:
            break
        best = None
        for path in cands:
            trial = copy.deepcopy(model)
            set_submodule(trial, path, nn.Identity())
            v = value(trial)
            if recalibrate:
                recal = copy.deepcopy(trial)
                recalibrate_bn(recal, b)
                v_r = value(recal)
                if sign * v_r > sign * v:
                    trial, v = recal, v_r
            if best is None or sign * v > sign * best[1]:
                best = (path, v, trial)
        set_submodule(model, best[0], nn.Identity())
        model.load_state_dict(best[2].state_dict())
        out.append(best[:2])
    return out


@dataclass
class StochasticDepth(Method):
    """Train with blocks dropped (p_L = 0.5), then remove the 2 least useful blocks:

    >>> ns.create("stochastic_depth", p_last=0.5, blocks=2)
    """

    name = "stochastic_depth"
    summary = "stochastic depth training (Huang et al. 2016), then residual blocks removed at inference"

    p_last: float = 0.5     # survival probability of the last block (linear decay from 1)
    blocks: int = 0         # blocks to remove for good at finalize (greedy, on training data)
    samples: int = 1000     # training samples used to choose them
    recalibrate: bool = True  # also try re-estimated BatchNorm statistics after each removal

    renamed: ClassVar[dict[str, str]] = {"remove": "'blocks' (the number of blocks removed)", "calib": "'samples'"}

    def validate(self):
        self.check(0.0 < self.p_last <= 1.0, "p_last", "in (0, 1]")
        self.check(self.blocks >= 0, "blocks", "an integer >= 0")
        self.check(self.samples >= 1, "samples", "an integer >= 1")

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self.blocks_ = residual_blocks(model)
        if not self.blocks_:
            raise TargetError(f"stochastic_depth: {type(model).__name__} has no residual basic block (bn2 + shortcut)")
        n_removable = sum(removable(b) for _, b in self.blocks_)
        if self.blocks > n_removable:
            raise RecipeError(f"stochastic_depth: cannot remove blocks = {self.blocks}: only {n_removable} "
                              "blocks have an identity shortcut")
        self.probs_ = survival_probs(len(self.blocks_), p_last=self.p_last)
        self.data_ = ctx.data
        self.handles_ = [b.bn2.register_forward_hook(self._hook(p)) for (_, b), p in zip(self.blocks_, self.probs_)]

    @staticmethod
    def _hook(p: float):
        def hook(module, inputs, out):
            if module.training:
                # One Bernoulli(p) draw per mini-batch: keep (1) or drop (0) the branch.
                return out * (torch.rand(()) < p).to(out.dtype)
            return out * p
        return hook

    @torch.no_grad()
    def finalize(self, model: nn.Module) -> None:
        for h in self.handles_:
            h.remove()
        for (_, b), p in zip(self.blocks_, self.probs_):
            # p * (gamma x_hat + beta) = (p gamma) x_hat + p beta: exact.
            b.bn2.weight.mul_(p)
            b.bn2.bias.mul_(p)
        if self.blocks:
            if self.data_ is None:
                raise RecipeError("stochastic_depth: blocks > 0 needs training data to choose the blocks")
            # the first `samples` samples, in batches of 250 (BatchNorm re-estimation averages per batch)
            calib = as_batches(self.data_).take(self.samples, batch_size=250)
            self.removed_ = [p for p, _ in removal_order(model, calib, limit=self.blocks,
                                                         recalibrate=self.recalibrate)]
        else:
            self.removed_ = []
