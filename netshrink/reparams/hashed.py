"""HashedNets' re-parametrisation: the weight is a virtual matrix read from a small
bucket vector through a hash, V_ij = xi(i, j) * w[h(i, j)] (Chen et al. 2015).

The parametrisation's `original` tensor *is* the bucket vector (K,): `right_inverse`
maps a trained weight to its least-squares buckets, so the optimizer trains buckets
and autograd sums the gradients of all virtual entries that share one.
A conv kernel (out, in, kh, kw) is hashed as the (out, in*kh*kw) matrix.
"""
from __future__ import annotations

import math

import torch

from netshrink.core.reparam import Reparam
from netshrink.functional.hashing import buckets_from_weight, hash_index, virtual_weight


def bucket_count(numel: int, factor: float) -> int:
    """Buckets of a layer at compression `factor` (stored / virtual): ceil(numel x factor)."""
    return max(1, int(math.ceil(numel * factor)))


class Hashed(Reparam):
    """w (K,) -> virtual weight of `shape`. Example:

    >>> rp = Hashed((300, 784), buckets=29_400, seed=1)
    """

    def __init__(self, shape: tuple[int, ...], *, buckets: int, seed: int):
        super().__init__()
        self.shape, self.buckets, self.seed = tuple(shape), int(buckets), int(seed)
        rows, cols = self.shape[0], math.prod(self.shape[1:])
        idx, sign = hash_index(out_features=rows, in_features=cols, buckets=self.buckets, seed=self.seed)
        # (rows, cols) each; derived from (shape, buckets, seed), so never stored.
        self.register_buffer("idx", idx, persistent=False)
        self.register_buffer("sign", sign, persistent=False)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        # (K,) -> (rows, cols) -> shape
        return virtual_weight(w, idx=self.idx, sign=self.sign.to(w.dtype)).reshape(self.shape)

    @torch.no_grad()
    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        return buckets_from_weight(weight.reshape(self.shape[0], -1), idx=self.idx,
                                   sign=self.sign.to(weight.dtype), buckets=self.buckets)
