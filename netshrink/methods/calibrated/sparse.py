"""`sparsegpt` (Frantar & Alistarh 2023) and `wanda` (Sun et al. 2024): one-shot pruning.

    >>> ns.create("sparsegpt", sparsity=0.5)        # or n=2, m=4 for 2:4
    >>> ns.create("wanda", sparsity=0.5)

Both leave plain Linear weights with exact zeros (the codec stores them sparse);
sparsegpt also updates the surviving weights (OBS), wanda does not.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from netshrink.functional.hessian import HessianAccumulator
from netshrink.functional.sparsegpt import sparsegpt_prune
from netshrink.functional.wanda import wanda_mask
from netshrink.core.targets import PerLayer
from netshrink.methods.calibrated.base import OneShot, hessian_for, input_scale_of, layer_value


@dataclass
class _Sparse(OneShot):
    sparsity: float = 0.5         # fraction of weights removed (unstructured)
    per_layer: PerLayer[float] = field(default_factory=PerLayer)   # sparsity by target pattern
    n: int = 0                    # n:m semi-structured: n non-zeros kept in every m inputs (m = 0: off)
    m: int = 0

    def validate(self):
        super().validate()
        self.check(0.0 <= self.sparsity < 1.0, "sparsity", "in [0, 1)")
        self.check(all(0.0 <= v < 1.0 for _, v in self.per_layer.items()), "per_layer", "sparsities in [0, 1)")
        self.check(self.m >= 0, "m", "an integer >= 0 (0: unstructured)")
        self.check((self.m == 0 or 0 < self.n <= self.m), "n",
                   f"an integer in [1, m = {self.m}]")


@dataclass
class SparseGPT(_Sparse):
    name = "sparsegpt"
    summary = "SparseGPT one-shot pruning with the OBS weight update, unstructured or n:m (Frantar & Alistarh 2023)"

    damp: float = 0.01
    block_size: int = 128

    def validate(self):
        super().validate()
        self.check(0.0 <= self.damp < 1.0, "damp", "in [0, 1)")
        self.check(self.block_size >= 1, "block_size", "an integer >= 1")

    def process(self, model: nn.Module, group: list[tuple[str, nn.Module]], stats: HessianAccumulator) -> None:
        for name, mod in group:
            w, loss = sparsegpt_prune(mod.weight.detach().float(), hessian_for(mod, stats),
                                      sparsity=layer_value(self, name, mod, self.sparsity),
                                      n=self.n, m=self.m, damp=self.damp, block_size=self.block_size)
            with torch.no_grad():
                mod.weight.copy_(w)
            self.report_[name] = {"loss": loss, "sparsity": float((w == 0).float().mean())}


@dataclass
class Wanda(_Sparse):
    name = "wanda"
    summary = "Wanda one-shot pruning by |W| * ||X||, per output row, no update (Sun et al. 2024)"
    needs_hessian = False

    def process(self, model: nn.Module, group: list[tuple[str, nn.Module]], stats: HessianAccumulator) -> None:
        for name, mod in group:
            c = input_scale_of(mod)
            norm = stats.norm if c is None else stats.norm * c.abs()
            keep = wanda_mask(mod.weight.detach(), norm, sparsity=layer_value(self, name, mod, self.sparsity),
                              n=self.n, m=self.m)
            with torch.no_grad():
                mod.weight.mul_(keep)
            self.report_[name] = {"sparsity": float((~keep).float().mean())}
