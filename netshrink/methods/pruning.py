"""Unstructured pruning by score: magnitude (Han et al. 2015; layer-wise or global,
Blalock et al. 2020) and random (the baseline every table needs).

Scores become boolean masks attached as `Mask` re-parametrisations, so fine-tuning
keeps pruned weights exactly zero; `finalize` bakes them into plain weights.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from netshrink.core.context import PrepareContext
from netshrink.core.method import Method
from netshrink.core.reparam import attach, bake, reparams_of
from netshrink.core.targets import Site, _matches
from netshrink.functional.prune import global_masks, topk_mask
from netshrink.reparams.mask import Mask


@dataclass
class ScorePruning(Method):
    """Base of one-shot score pruning: subclasses define `scores`."""

    sparsity: float = 0.9
    scope: Literal["layer", "global"] = "layer"
    # Global scope: every layer keeps at least this fraction of its weights.
    min_keep: float = 0.0
    # Per-layer sparsity by name or `re:` pattern; overrides `sparsity` (layer scope).
    sparsity_map: dict = field(default_factory=dict)

    def validate(self):
        self.check(0.0 <= self.sparsity < 1.0, "sparsity", "in [0, 1)")
        self.check(0.0 <= self.min_keep <= 1.0, "min_keep", "in [0, 1]")
        for k, v in self.sparsity_map.items():
            if not (isinstance(v, (int, float)) and 0 <= v < 1):
                self.check(False, "sparsity_map", f"a table of sparsities in [0, 1) (entry {k!r} = {v!r})")

    def scores(self, sites: list[Site], model: nn.Module, ctx: PrepareContext) -> list[torch.Tensor]:
        raise NotImplementedError

    def layer_sparsity(self, site: Site) -> float:
        for pattern, s in self.sparsity_map.items():
            if _matches(pattern, site.name, site.module):
                return float(s)
        return self.sparsity

    def masks(self, sites, scores) -> list[torch.Tensor]:
        if self.scope == "global" and not self.sparsity_map:
            return global_masks(scores, sparsity=self.sparsity, min_keep=self.min_keep)
        return [topk_mask(s, sparsity=self.layer_sparsity(site)) for site, s in zip(sites, scores)]

    @torch.no_grad()
    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self.sites_ = self.sites(model)
        scores = self.scores(self.sites_, model, ctx)
        for site, mask in zip(self.sites_, self.masks(self.sites_, scores)):
            # A weight pruned before (by an earlier step) stays pruned.
            existing = [rp for rp in reparams_of(site.module, site.param_name) if isinstance(rp, Mask)]
            if existing:
                existing[0].set(existing[0].mask & mask)
            else:
                attach(site, Mask(mask & (site.tensor != 0)))

    def finalize(self, model: nn.Module) -> None:
        for site in self.sites_:
            bake(site.module, site.param_name, Mask)


@dataclass
class Magnitude(ScorePruning):
    """Prune the smallest |w|, per layer or with one global threshold."""

    name = "magnitude"
    summary = "magnitude pruning |w| (Han et al. 2015), layer-wise or global, target sparsity"

    def scores(self, sites, model, ctx):
        return [site.tensor.detach().abs() for site in sites]


@dataclass
class RandomPrune(ScorePruning):
    """Prune uniformly at random: the baseline every pruning table needs."""

    name = "random"
    summary = "random unstructured pruning at the target sparsity (the baseline)"
    seed: int = 0

    def scores(self, sites, model, ctx):
        g = torch.Generator().manual_seed(self.seed)
        return [torch.rand(site.tensor.shape, generator=g) for site in sites]
