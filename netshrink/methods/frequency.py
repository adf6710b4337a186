"""Frequency-domain packing, CNNpack-style (Wang et al. 2016): take the 2-D DCT of
every conv kernel and of every (block x block) tile of FC weights, keep the
high-energy coefficients (the largest |c|; a fraction `sparsity` of each layer's
coefficients is dropped), fine-tune the
kept coefficients in the frequency domain, then cluster them with 1-D k-means into
2**bits shared values. Finalize leaves FrequencyConv2d / FrequencyLinear modules that
store only the sparse quantized coefficients (entropy-coded by the codec) and rebuild
the weight by inverse DCT at load.

Not implemented from CNNpack: the decomposition of filters into shared cluster centres
plus per-filter residuals, and the DCT-basis convolution speed-up; inference here uses
the materialised dense weight.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from netshrink.core.context import PrepareContext
from netshrink.core.method import Method
from netshrink.core.submodules import set_submodule
from netshrink.core.reparam import attach, original, reparams_of
from netshrink.errors import TargetError
from netshrink.functional.prune import global_masks, topk_mask
from netshrink.reparams.frequency import Frequency, layout_of, to_coef
from netshrink.runtime.frequency import FrequencyConv2d, FrequencyLinear


def _nearest(v: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Index of the nearest of the sorted centroids c (k,) for every value of v (n,)."""
    return torch.bucketize(v, (c[1:] + c[:-1]) / 2)


def kmeans_levels(values: torch.Tensor, *, k: int, iters: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's 1-D k-means with linear initialisation over [min, max] (as Deep
    Compression): (n,) values -> ((k',) sorted centroids, (n,) index). Empty clusters
    are dropped, so k' <= k. In 1-D the centroids stay sorted, so assignment is a
    bucketize against the midpoints (O(n log k), no (n, k) matrix)."""
    v = values.double()
    c = torch.linspace(float(v.min()), float(v.max()), k, dtype=torch.float64)
    for _ in range(iters):
        idx = _nearest(v, c)
        sums = torch.zeros_like(c).index_add_(0, idx, v)
        counts = torch.zeros_like(c).index_add_(0, idx, torch.ones_like(v))
        new = torch.where(counts > 0, sums / counts.clamp_min(1), c)
        if torch.equal(new, c):
            break
        c = new
    c = torch.unique(c[torch.unique(_nearest(v, c))])  # drop empty clusters, keep sorted
    return c.to(values.dtype), _nearest(v, c)


@dataclass
class FrequencyPack(Method):
    """`frequency` keeping 10 % of the DCT coefficients (dropping 90 %) at 5 bits:

    >>> ns.create("frequency", sparsity=0.9, bits=5, block=8)
    """

    name = "frequency"
    summary = "CNNpack-style: DCT of kernels / FC blocks, keep high-energy coefficients, k-means, entropy-code"

    sparsity: float = 0.9   # fraction of DCT coefficients dropped in each layer
    bits: int = 5           # k-means levels = 2**bits for the kept coefficients; 0 = keep fp32
    block: int = 8          # DCT tile size of FC weights
    # "layer": every layer drops `sparsity` of its coefficients; "global": one |c| threshold
    # over all targeted layers (the orthonormal DCT preserves energy, so |c| compares
    # across layers like |w| does in global magnitude pruning).
    scope: Literal["layer", "global"] = "layer"

    renamed: ClassVar[dict[str, str]] = {"keep": "'sparsity' (= 1 - keep, the fraction of coefficients dropped)"}

    def validate(self):
        self.check(0.0 <= self.sparsity < 1.0, "sparsity", "in [0, 1)")
        self.check(0 <= self.bits <= 8, "bits", "an integer in 0..8 (0 = no quantization)")
        self.check(2 <= self.block <= 64, "block", "an integer in 2..64")

    @torch.no_grad()
    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self.sites_ = self.sites(model)
        coefs = []
        for site in self.sites_:
            if not isinstance(site.module, (nn.Linear, nn.Conv2d)) or site.param_name != "weight":
                raise TargetError(f"frequency: {site.name} is not the weight of a Linear or Conv2d layer")
            w = site.tensor.detach()
            coefs.append(to_coef(w, layout=layout_of(tuple(w.shape)), block=self.block))
        # High energy = large |c|; the zero padding of FC tiles is never kept before
        # a real coefficient.
        if self.scope == "global":
            masks = global_masks([c.abs() for c in coefs], sparsity=self.sparsity)
        else:
            masks = [topk_mask(c.abs(), sparsity=self.sparsity) for c in coefs]
        for site, mask in zip(self.sites_, masks):
            attach(site, Frequency(site.tensor.shape, mask=mask, block=self.block))

    @torch.no_grad()
    def finalize(self, model: nn.Module) -> None:
        for site in self.sites_:
            chain = reparams_of(site.module, "weight")
            if len(chain) != 1 or not isinstance(chain[0], Frequency):
                raise TargetError(f"frequency: {site.name} carries other re-parametrisations "
                                  f"({[type(r).__name__ for r in chain]}); apply frequency last or alone")
            rp, m = chain[0], site.module
            # where(), not a product: c * False is -0.0 for negative c, a distinct bit
            # pattern that the codec would have to store.
            coef = torch.where(rp.mask, original(m, "weight").detach(), torch.zeros(()))
            if self.bits and int(rp.mask.sum()):
                kept = coef[rp.mask]
                levels, idx = kmeans_levels(kept, k=2 ** self.bits)
                coef[rp.mask] = levels[idx]
            bias = m.bias is not None
            if isinstance(m, nn.Linear):
                new = FrequencyLinear(m.in_features, m.out_features, rp.block, bias)
            else:
                new = FrequencyConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding,
                                      m.dilation, m.groups, bias)
            new.coef.copy_(coef)
            if bias:
                new.bias.copy_(m.bias.detach())
            set_submodule(model, site.module_name, new.train(m.training))
