"""The hashing trick of HashedNets (Chen et al. 2015): index (i, j) -> bucket h(i, j)
and sign xi(i, j) in {-1, +1}.

The hash is a fixed integer function evaluated in int64 torch ops, so the same
(seed, shape) gives the same buckets on every machine and torch build. All
intermediate values stay below 2**63 (32-bit words times multipliers < 2**31), so no
step relies on signed overflow.

    idx, sign = hash_index(out_features=300, in_features=784, buckets=29_400, seed=1)
    virtual = sign * buckets_vector[idx]          # (300, 784)
"""
from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF
# Multiplier of the 32-bit integer hash "hash prospector" (good avalanche); < 2**31.
_MUL = 0x45D9F3B
# Salts that make the bucket hash and the sign hash independent functions.
_SALT_BUCKET = 0x2545F491
_SALT_SIGN = 0x68E31DA4


def mix32(x: torch.Tensor) -> torch.Tensor:
    """Avalanche a (…,) int64 tensor of 32-bit words into 32-bit words."""
    x = x & _MASK32
    x = (((x >> 16) ^ x) * _MUL) & _MASK32
    x = (((x >> 16) ^ x) * _MUL) & _MASK32
    return (x >> 16) ^ x


def hash32(i: torch.Tensor, j: torch.Tensor, *, seed: int, salt: int) -> torch.Tensor:
    """A 32-bit hash of index pairs (i, j): i (rows, 1) and j (1, cols) int64 in
    [0, 2**32), broadcast to (rows, cols); keyed by `seed` and `salt`. The row part is
    mixed once per row, so the full matrix costs one `mix32`."""
    key = (int(seed) * 0x9E3779B1 + salt) & _MASK32
    row = mix32(mix32(i ^ key) + 0x7F4A7C15)          # (rows, 1)
    return mix32(row ^ j)                              # (rows, cols)


def hash_index(*, out_features: int, in_features: int, buckets: int, seed: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Bucket index h(i, j) in [0, buckets) and sign xi(i, j) in {-1, +1} for every
    entry of an (out_features, in_features) virtual matrix.

    Returns (idx: (out, in) int64, sign: (out, in) float32).
    """
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    if max(out_features, in_features) >= 2**32:
        raise ValueError("hash_index supports dimensions below 2**32")
    i = torch.arange(out_features, dtype=torch.int64).unsqueeze(1)
    j = torch.arange(in_features, dtype=torch.int64).unsqueeze(0)
    idx = hash32(i, j, seed=seed, salt=_SALT_BUCKET) % buckets
    # The sign comes from an independently keyed hash (xi is independent of h in the paper).
    bit = (hash32(i, j, seed=seed, salt=_SALT_SIGN) >> 15) & 1
    sign = (1 - 2 * bit).to(torch.float32)
    return idx, sign


def virtual_weight(buckets: torch.Tensor, *, idx: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """V_ij = xi(i, j) * w[h(i, j)]: (K,) buckets -> idx.shape virtual weight. Autograd
    sums the gradients of all entries that share a bucket (the paper's per-bucket
    gradient)."""
    # index_select's backward is an index_add: the per-bucket gradient sum.
    return sign * buckets.index_select(0, idx.reshape(-1)).reshape(idx.shape)


def buckets_from_weight(weight: torch.Tensor, *, idx: torch.Tensor, sign: torch.Tensor, buckets: int
                        ) -> torch.Tensor:
    """Initialise the (K,) bucket vector from a trained weight: each bucket is the mean
    of xi(i, j) * W_ij over the entries that hash to it (the least-squares fit of W by
    a hashed matrix); empty buckets are 0."""
    flat_idx = idx.reshape(-1)
    total = torch.zeros(buckets, dtype=weight.dtype).index_add_(0, flat_idx, (sign * weight).reshape(-1))
    count = torch.zeros(buckets, dtype=weight.dtype).index_add_(0, flat_idx, torch.ones_like(total[flat_idx]))
    return total / count.clamp_min(1)
