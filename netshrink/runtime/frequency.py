"""Baked frequency-domain layers: the stored state is the (sparse, quantized) DCT
coefficient tensor and the bias; the weight is the inverse DCT, rebuilt once at load
(and whenever the coefficients change). The codec stores the mostly-zero coefficient
tensor as gap-coded positions plus a codebook of the few quantized values, each
stream entropy-coded: CNNpack's "sparse, quantized, Huffman" storage.
Inference costs the dense layer's FLOPs (the weight is materialised).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from netshrink.reparams.frequency import from_coef, layout_of
from netshrink.runtime.weight_cache import DerivedWeight, stored_counts


class _Frequency(nn.Module):
    def _setup(self, weight_shape, coef_shape, block: int, bias: bool):
        self.weight_shape, self.block = tuple(weight_shape), int(block)
        self.layout = layout_of(self.weight_shape)
        self.register_buffer("coef", torch.zeros(coef_shape))
        self.bias = nn.Parameter(torch.zeros(self.weight_shape[0])) if bias else None
        self._cache = DerivedWeight()

    def dense_weight(self) -> torch.Tensor:
        return self._cache.get(self.coef, lambda: from_coef(self.coef, layout=self.layout, shape=self.weight_shape))

    def ns_after_load(self) -> None:
        self._cache.clear()

    def ns_counts(self) -> tuple[int, int]:
        return stored_counts(self.weight_shape, self.coef, self.bias)


def _coef_shape(weight_shape, block):
    if len(weight_shape) == 4:
        return tuple(weight_shape)
    r, c = weight_shape
    return (math.ceil(r / block), math.ceil(c / block), block, block)


class FrequencyLinear(_Frequency):
    """A Linear whose (out, in) weight is the block-wise inverse DCT of `coef`.

    >>> layer = FrequencyLinear(800, 500, block=8)
    >>> layer.coef.shape
    torch.Size([63, 100, 8, 8])
    """

    def __init__(self, in_features: int, out_features: int, block: int = 8, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        shape = (self.out_features, self.in_features)
        self._setup(shape, _coef_shape(shape, int(block)), block, bias)

    def forward(self, x):
        return F.linear(x, self.dense_weight(), self.bias)

    def ns_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "block": self.block,
                "bias": self.bias is not None}

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "FrequencyLinear":
        return cls(int(cfg["in_features"]), int(cfg["out_features"]), int(cfg["block"]), bool(cfg["bias"]))


class FrequencyConv2d(_Frequency):
    """A Conv2d whose every (kh, kw) kernel is the inverse 2-D DCT of `coef`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = True):
        super().__init__()
        pair = lambda v: tuple(int(a) for a in v) if isinstance(v, (list, tuple)) else (int(v), int(v))  # noqa: E731
        self.in_channels, self.out_channels, self.groups = int(in_channels), int(out_channels), int(groups)
        self.kernel_size, self.stride, self.dilation = pair(kernel_size), pair(stride), pair(dilation)
        self.padding = padding if isinstance(padding, str) else pair(padding)
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        self._setup(shape, shape, 8, bias)

    def forward(self, x):
        return F.conv2d(x, self.dense_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)

    def ns_config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride),
                "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
                "dilation": list(self.dilation), "groups": self.groups, "bias": self.bias is not None}

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "FrequencyConv2d":
        return cls(cfg["in_channels"], cfg["out_channels"], cfg["kernel_size"], cfg["stride"], cfg["padding"],
                   cfg["dilation"], int(cfg["groups"]), bool(cfg["bias"]))
