"""Sensitivity analysis (Han et al. 2015, fig. 5): the task metric vs sparsity for each
layer pruned alone by magnitude, without retraining; and a per-layer sparsity allocation
derived from it that a recipe can use (`per_layer` of magnitude /
gradual_magnitude).

    >>> res = sensitivity(model, val)             # res.metric: "accuracy", "mse", "fidelity_cosine" ...
    >>> alloc = res.allocation(target=0.9)        # {"fc1.weight": 0.95, ...}
    >>> ns.create("magnitude", sparsity=0.9, per_layer=alloc)

The metric is measure's (measure/metrics.py), read through the batch adapter: `auto` is
accuracy for classification only, MSE for float targets and, for unlabelled data,
fidelity to the dense model (top-1 agreement for logits, cosine for hidden states);
or a name, or the user's callable `metric(outputs, targets)`.

Allocation rule: find the smallest damage d (the metric's drop, or its rise for a
lower-is-better metric such as MSE) such that giving every layer the largest tested
sparsity whose damage is at most d reaches the overall `target` sparsity (weighted by
layer size). Sensitive layers stay denser; robust ones absorb the pruning.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from netshrink.core.batches import as_batches
from netshrink.core.targets import Targets, select
from netshrink.errors import NetshrinkError
from netshrink.functional.prune import topk_mask
from netshrink.measure import metrics
from netshrink.train.loop import predict, predict_positions

DEFAULT_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


@dataclass
class SensitivityResult:
    sparsities: list[float]
    baseline: float
    curves: dict[str, list[float]] = field(default_factory=dict)   # layer -> the metric at each sparsity
    sizes: dict[str, int] = field(default_factory=dict)            # layer -> weights
    metric: str = "accuracy"                                       # what the curves hold (measure/metrics.py)
    higher_is_better: bool = True

    def drops(self, layer: str) -> list[float]:
        """The damage at each sparsity: how much worse than the dense baseline."""
        sign = 1.0 if self.higher_is_better else -1.0
        return [sign * (self.baseline - a) for a in self.curves[layer]]

    def _pick(self, tolerance: float) -> dict[str, float]:
        out = {}
        for layer in self.curves:
            ok = [s for s, d in zip(self.sparsities, self.drops(layer)) if d <= tolerance]
            out[layer] = max(ok) if ok else 0.0
        return out

    def overall(self, alloc: dict[str, float]) -> float:
        return sum(alloc[k] * self.sizes[k] for k in alloc) / sum(self.sizes.values())

    def allocation(self, target: float) -> dict[str, float]:
        """Per-layer sparsities reaching at least `target` overall at the smallest
        tolerated damage (see the module docstring)."""
        if not (0.0 <= target < 1.0):
            raise NetshrinkError(f"target sparsity must be in [0, 1), got {target}")
        candidates = sorted({d for layer in self.curves for d in self.drops(layer)} | {0.0})
        for tol in candidates:
            alloc = self._pick(tol)
            if self.overall(alloc) >= target - 1e-9:
                return alloc
        raise NetshrinkError(f"overall sparsity {target} is out of reach with the tested sparsities "
                             f"(at most {max(self.sparsities)} per layer)")

    def to_dict(self) -> dict:
        return {"metric": self.metric, "higher_is_better": self.higher_is_better, "sparsities": self.sparsities,
                "baseline": self.baseline, "curves": self.curves, "sizes": self.sizes}


@torch.no_grad()
def sensitivity(model: nn.Module, data, *, sparsities=DEFAULT_SPARSITIES, targets: Targets | None = None,
                progress=None, metric="auto", reference: nn.Module | None = None,
                higher_is_better: bool | None = None, forward=None, target=None,
                n_inputs: int | None = None) -> SensitivityResult:
    """Prune each selected weight alone by magnitude at each sparsity, measure `metric`
    on `data` (anything core.batches reads; `forward`, `target`, `n_inputs` are its batch
    rules), restore it. The model is left as it was.

    metric: "auto", a name from measure/metrics.py or a callable `metric(outputs, targets)`.
    Fidelity metrics compare with `reference`'s outputs, by default the model's own before
    any layer is pruned. higher_is_better: the direction of a callable metric (else its
    `higher_is_better` attribute); names know theirs.
    """
    b = as_batches(data, forward=forward, target=target, n_inputs=n_inputs)
    sites = select(model, targets)
    dense_out, y, mask = predict_positions(model, b)
    ref_out = predict(reference, b)[0] if reference is not None else dense_out
    ref_model = reference if reference is not None else model
    name = metrics.choose(metric, dense_out, y, has_reference=True, hidden=metrics.is_hidden_state(ref_model, b))
    better = higher_is_better if higher_is_better is not None else metrics.higher_is_better(name, metric)
    if better is None:
        raise NetshrinkError(f"sensitivity: metric {name!r} is your own, so it cannot tell which way is better: "
                             "give higher_is_better=True / False (CLI --higher-is-better / --lower-is-better), "
                             "or set the function's higher_is_better attribute")

    def score(out) -> float:
        return metrics.compute(name, metric, out, y, ref_out, mask)

    res = SensitivityResult(sparsities=[float(s) for s in sparsities], baseline=score(dense_out),
                            metric=name, higher_is_better=better)
    for site in sites:
        w = site.tensor
        saved = w.detach().clone()
        res.sizes[site.name] = w.numel()
        res.curves[site.name] = []
        try:
            for s in res.sparsities:
                w.copy_(saved * topk_mask(saved.abs(), sparsity=s))
                _refresh(site)
                res.curves[site.name].append(score(predict(model, b)[0]))
                if progress is not None:
                    progress(site.name, s, res.curves[site.name][-1])
        finally:
            w.copy_(saved)
            _refresh(site)
    return res


def _refresh(site) -> None:
    if hasattr(site.module, "_init_flat_weights"):   # LSTM/GRU flat weights
        site.module._init_flat_weights()
