"""ScaledLinear: y = W' (x * input_scale) + b, a Linear whose input is rescaled per channel.

AWQ / SmoothQuant rewrite W x as (W diag(s)) (x / s). Where no earlier op can absorb
1 / s (in a BERT block every linear reads a LayerNorm output that also feeds the
residual, or a GELU output), the 1 / s stays here as an explicit (in,) buffer; the
weight W' = W diag(s) is what gets quantized (and stored on its integer grid).

    >>> m = ScaledLinear.from_linear(nn.Linear(384, 384), scale=s)   # same outputs as the Linear
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ScaledLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))          # (out, in) = W diag(s)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        self.register_buffer("input_scale", torch.ones(in_features))                # (in,) = 1 / s

    @classmethod
    @torch.no_grad()
    def from_linear(cls, linear: nn.Linear, scale: torch.Tensor) -> "ScaledLinear":
        """W' = W diag(scale), input_scale = 1 / scale (outputs unchanged up to rounding)."""
        m = cls(linear.in_features, linear.out_features, linear.bias is not None)
        m.weight.copy_(linear.weight.detach() * scale[None, :])
        m.input_scale.copy_(1.0 / scale)
        if linear.bias is not None:
            m.bias.copy_(linear.bias.detach())
        return m

    def ns_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None}

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "ScaledLinear":
        return cls(int(cfg["in_features"]), int(cfg["out_features"]), bool(cfg["bias"]))

    def ns_counts(self) -> tuple[int, int]:
        dense = self.weight.numel() + (self.bias.numel() if self.bias is not None else 0)
        nz = int((self.weight != 0).sum()) + (int((self.bias != 0).sum()) if self.bias is not None else 0)
        return dense, nz

    def ns_flops(self, batch: int) -> tuple[int, int]:
        f = 2 * batch * self.in_features * self.out_features
        return f, f

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x * self.input_scale, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, explicit input scale"
