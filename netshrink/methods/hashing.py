"""HashedNets (Chen et al. 2015): every Linear / Conv2d weight becomes a virtual
matrix read from a small bucket vector through a hash h(i, j) and a sign hash
xi(i, j); the stored `ratio` sets the bucket count of each layer
(K = ceil(ratio x numel)). Works from a trained layer (buckets initialised as the
mean of the sign-corrected weights that hash to them) or from scratch. Finalize
leaves HashedLinear / HashedConv2d modules, whose files store only buckets + bias.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from netshrink.core.context import PrepareContext
from netshrink.core.method import Method
from netshrink.core.submodules import set_submodule
from netshrink.core.reparam import attach, original, reparams_of
from netshrink.errors import TargetError
from netshrink.reparams.hashed import Hashed, bucket_count
from netshrink.runtime.hashed_linear import HashedConv2d, HashedLinear


@dataclass
class Hashing(Method):
    """`hashing` with ratio=1/8: each layer stores 1/8 of its weights as buckets.

    >>> ns.create("hashing", ratio=0.125, init="trained")
    """

    name = "hashing"
    summary = "HashedNets: virtual weights read from shared buckets through a hash (Chen et al. 2015)"

    # Stored buckets / virtual weights of every targeted layer (1/8 = 8x fewer).
    ratio: float = 0.125
    seed: int = 0
    # "trained": buckets = least-squares fit of the current weights; "scratch": random.
    init: Literal["trained", "scratch"] = "trained"

    renamed: ClassVar[dict[str, str]] = {"factor": "'ratio' (stored buckets / weights)"}

    def validate(self):
        self.check(0.0 < self.ratio <= 1.0, "ratio", "in (0, 1]")
        self.check(0 <= self.seed < 2**31, "seed", "an integer in [0, 2**31)")

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self.sites_ = [s for s in self.sites(model)]
        for k, site in enumerate(self.sites_):
            if not isinstance(site.module, (nn.Linear, nn.Conv2d)) or site.param_name != "weight":
                raise TargetError(f"hashing: {site.name} is not the weight of a Linear or Conv2d layer")
            w = site.tensor.detach()
            rp = Hashed(w.shape, buckets=bucket_count(w.numel(), self.ratio), seed=self._layer_seed(k))
            attach(site, rp)  # right_inverse: original := buckets fitted to w
            if self.init == "scratch":
                # The bound of torch's default Linear/Conv init, so V starts like a fresh layer.
                bound = 1.0 / math.sqrt(math.prod(w.shape[1:]))
                with torch.no_grad():
                    original(site.module, "weight").uniform_(-bound, bound)

    def _layer_seed(self, k: int) -> int:
        return (self.seed * 1009 + k) % (2**31)

    @torch.no_grad()
    def finalize(self, model: nn.Module) -> None:
        for site in self.sites_:
            chain = reparams_of(site.module, "weight")
            if len(chain) != 1 or not isinstance(chain[0], Hashed):
                raise TargetError(f"hashing: {site.name} carries other re-parametrisations "
                                  f"({[type(r).__name__ for r in chain]}); hash it last or alone")
            rp, m = chain[0], site.module
            buckets = original(m, "weight").detach().clone()
            bias = m.bias is not None
            if isinstance(m, nn.Linear):
                new = HashedLinear(m.in_features, m.out_features, rp.buckets, rp.seed, bias)
            else:
                new = HashedConv2d(m.in_channels, m.out_channels, m.kernel_size, rp.buckets, rp.seed, m.stride,
                                   m.padding, m.dilation, m.groups, bias)
            new.buckets.copy_(buckets)
            if bias:
                new.bias.copy_(m.bias.detach())
            set_submodule(model, site.module_name, new.train(m.training))
