"""Structured sparsity patterns that kernels can exploit: whole blocks (Narang et
al. 2017 "Block-sparse RNNs", Gray et al. 2017 block-sparse GPU kernels) and N:M
(N non-zeros in every group of M consecutive weights, e.g. NVIDIA's 2:4).

Weights are viewed as (out, in x kernel...) matrices; masks are chosen by magnitude
(a block by its mean |w|), kept through fine-tuning and baked at the end.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from netshrink.core.context import PrepareContext
from netshrink.functional.prune import block_mask, nm_mask
from netshrink.methods.pruning import MaskPruning, ScorePruning


@dataclass
class BlockPrune(ScorePruning):
    """Prune whole (rows x cols) blocks with the smallest mean |w|, per layer.

    >>> ns.create("block", sparsity=0.9, block=(4, 4))
    """

    name = "block"
    summary = "block sparsity: prune whole blocks (e.g. 4x4 ... 32x32) by mean |w| (Narang et al. 2017)"
    block: tuple[int, int] = (4, 4)   # (rows, cols) of one block; TOML: block = [4, 4]

    def validate(self):
        super().validate()
        self.check(all(b >= 1 for b in self.block), "block", "a pair of integers >= 1, e.g. [4, 4]")
        self.check(self.scope == "layer", "scope", "\"layer\" (block pruning ranks blocks within each layer)")

    def scores(self, sites, model, ctx):
        return [site.tensor.detach().abs() for site in sites]

    def masks(self, sites, scores, at=lambda s: s):
        return [block_mask(s, block=self.block, sparsity=at(f)) for f, s in zip(self.layer_sparsities(sites), scores)]


@dataclass
class NMPrune(MaskPruning):
    """Keep the `n` largest |w| in every group of `m` consecutive input weights.

    >>> ns.create("nm", n=2, m=4)
    """

    name = "nm"
    summary = "N:M semi-structured sparsity (e.g. 2:4): n non-zeros in every group of m weights"
    n: int = 2
    m: int = 4

    def validate(self):
        super().validate()
        self.check(self.m >= 1, "m", "an integer >= 1")
        self.check(0 <= self.n <= self.m, "n", f"an integer in [0, m = {self.m}]")

    @torch.no_grad()
    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self.sites_ = self.sites(model)
        self.remember_input(ctx)
        self.apply_masks(self.sites_, [nm_mask(s.tensor.detach().abs(), n=self.n, m=self.m) for s in self.sites_])
