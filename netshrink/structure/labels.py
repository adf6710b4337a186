"""Channel labels and the op families the label rules know (see ops.py)."""
from __future__ import annotations

from torch import nn


class _Pinned:
    def __repr__(self):
        return "PINNED"


PINNED = _Pinned()

_UNARY = {"relu", "relu_", "gelu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid", "elu", "leaky_relu",
          "relu6", "softplus", "mish", "dropout", "dropout1d", "dropout2d", "contiguous", "clone", "neg", "abs",
          "float", "detach", "to", "type", "sigmoid_", "tanh_"}
_POOL = {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
         "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
         "adaptive_max_pool2d", "boolean_dispatch"}
_BINARY = {"add", "sub", "mul", "truediv", "div", "iadd", "isub", "imul", "add_", "mul_", "sub_"}
_ELEMENTWISE_MODULES = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.ELU,
                        nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.Softplus, nn.Dropout, nn.Dropout1d,
                        nn.Dropout2d, nn.Identity)
_POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d,
                 nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
_PIN_MODULES = (nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d)


class Label:
    """Units along dimension `dim` of a tensor (len(units) == tensor.shape[dim])."""

    __slots__ = ("units", "dim")

    def __init__(self, units: list[int], dim: int):
        self.units = units
        self.dim = dim
