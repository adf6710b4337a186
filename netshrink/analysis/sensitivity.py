"""Sensitivity analysis (Han et al. 2015, fig. 5): accuracy vs sparsity for each layer
pruned alone by magnitude, without retraining; and a per-layer sparsity allocation
derived from it that a recipe can use (`per_layer` of magnitude /
gradual_magnitude).

    >>> res = sensitivity(model, val)
    >>> alloc = res.allocation(target=0.9)        # {"fc1.weight": 0.95, ...}
    >>> ns.create("magnitude", sparsity=0.9, per_layer=alloc)

Allocation rule: find the smallest accuracy drop d such that giving every layer the
largest tested sparsity whose drop is at most d reaches the overall `target` sparsity
(weighted by layer size). Sensitive layers stay denser; robust ones absorb the pruning.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from netshrink.core.targets import Targets, select
from netshrink.errors import NetshrinkError
from netshrink.functional.prune import topk_mask
from netshrink.train.loop import evaluate

DEFAULT_SPARSITIES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


@dataclass
class SensitivityResult:
    sparsities: list[float]
    baseline: float
    curves: dict[str, list[float]] = field(default_factory=dict)   # layer -> accuracy at each sparsity
    sizes: dict[str, int] = field(default_factory=dict)            # layer -> weights

    def drops(self, layer: str) -> list[float]:
        return [self.baseline - a for a in self.curves[layer]]

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
        tolerated accuracy drop (see the module docstring)."""
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
        return {"sparsities": self.sparsities, "baseline": self.baseline, "curves": self.curves, "sizes": self.sizes}


@torch.no_grad()
def sensitivity(model: nn.Module, data, *, sparsities=DEFAULT_SPARSITIES, targets: Targets | None = None,
                progress=None) -> SensitivityResult:
    """Prune each selected weight alone by magnitude at each sparsity, evaluate on
    `data` (labelled), restore it. The model is left as it was."""
    sites = select(model, targets)
    res = SensitivityResult(sparsities=[float(s) for s in sparsities], baseline=evaluate(model, data))
    for site in sites:
        w = site.tensor
        saved = w.detach().clone()
        res.sizes[site.name] = w.numel()
        res.curves[site.name] = []
        for s in res.sparsities:
            w.copy_(saved * topk_mask(saved.abs(), sparsity=s))
            if hasattr(site.module, "_init_flat_weights"):   # LSTM/GRU flat weights
                site.module._init_flat_weights()
            res.curves[site.name].append(evaluate(model, data))
            if progress is not None:
                progress(site.name, s, res.curves[site.name][-1])
        w.copy_(saved)
    return res
