"""Baked HashedNets layers: Linear and Conv2d whose stored state is only the bucket
vector (K,) and the bias; the virtual weight is rebuilt from (shape, buckets, seed)
by the deterministic hash, so a file holds K floats instead of out x in.

In eval mode (no autograd) the virtual weight is cached and rebuilt only when the
buckets change, so inference costs one dense matmul / conv, like the layer it
replaces: hashing saves storage, not FLOPs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from netshrink.functional.hashing import hash_index, virtual_weight
from netshrink.runtime.weight_cache import DerivedWeight, stored_counts


class _Hashed(nn.Module):
    """Shared machinery: `weight_shape`, `buckets` (K,) parameter, hash buffers."""

    def _setup(self, weight_shape: tuple[int, ...], n_buckets: int, seed: int, bias: bool):
        self.weight_shape, self.n_buckets, self.seed = tuple(weight_shape), int(n_buckets), int(seed)
        rows, cols = weight_shape[0], math.prod(weight_shape[1:])
        self.buckets = nn.Parameter(torch.zeros(self.n_buckets))
        self.bias = nn.Parameter(torch.zeros(rows)) if bias else None
        idx, sign = hash_index(out_features=rows, in_features=cols, buckets=self.n_buckets, seed=self.seed)
        self.register_buffer("idx", idx, persistent=False)    # (rows, cols) int64
        self.register_buffer("sign", sign, persistent=False)  # (rows, cols) +-1
        self._cache = DerivedWeight()

    def virtual_weight(self) -> torch.Tensor:
        """The (out, in[, kh, kw]) weight V = xi * buckets[h]."""
        if self.training or (torch.is_grad_enabled() and self.buckets.requires_grad):
            return virtual_weight(self.buckets, idx=self.idx, sign=self.sign).reshape(self.weight_shape)
        return self._cache.get(self.buckets, lambda: virtual_weight(self.buckets, idx=self.idx, sign=self.sign)
                               .reshape(self.weight_shape))

    def ns_after_load(self) -> None:
        self._cache.clear()

    def ns_counts(self) -> tuple[int, int]:
        return stored_counts(self.weight_shape, self.buckets, self.bias)


class HashedLinear(_Hashed):
    """y = x V^T + b with V (out, in) read from K buckets. Example:

    >>> layer = HashedLinear(784, 300, n_buckets=4_000, seed=1)
    >>> layer(torch.randn(2, 784)).shape
    torch.Size([2, 300])
    """

    def __init__(self, in_features: int, out_features: int, n_buckets: int, seed: int = 0, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self._setup((self.out_features, self.in_features), n_buckets, seed, bias)

    def forward(self, x):
        return F.linear(x, self.virtual_weight(), self.bias)

    def ns_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "n_buckets": self.n_buckets,
                "seed": self.seed, "bias": self.bias is not None}

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "HashedLinear":
        return cls(int(cfg["in_features"]), int(cfg["out_features"]), int(cfg["n_buckets"]), int(cfg["seed"]),
                   bool(cfg["bias"]))


class HashedConv2d(_Hashed):
    """A Conv2d whose (out, in/groups, kh, kw) kernel is hashed as an (out, fan_in)
    matrix into K buckets."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, n_buckets: int, seed: int = 0,
                 stride=1, padding=0, dilation=1, groups: int = 1, bias: bool = True):
        super().__init__()
        pair = lambda v: tuple(int(a) for a in v) if isinstance(v, (list, tuple)) else (int(v), int(v))  # noqa: E731
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size, self.stride, self.dilation = pair(kernel_size), pair(stride), pair(dilation)
        self.padding = padding if isinstance(padding, str) else pair(padding)
        self._setup((self.out_channels, self.in_channels // self.groups, *self.kernel_size), n_buckets, seed, bias)

    def forward(self, x):
        return F.conv2d(x, self.virtual_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)

    def ns_config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "n_buckets": self.n_buckets, "seed": self.seed,
                "stride": list(self.stride), "padding": self.padding if isinstance(self.padding, str)
                else list(self.padding), "dilation": list(self.dilation), "groups": self.groups,
                "bias": self.bias is not None}

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "HashedConv2d":
        return cls(cfg["in_channels"], cfg["out_channels"], cfg["kernel_size"], int(cfg["n_buckets"]),
                   int(cfg["seed"]), cfg["stride"], cfg["padding"], cfg["dilation"], int(cfg["groups"]),
                   bool(cfg["bias"]))
