"""`awq` (Lin et al. 2024) and `smoothquant` (Xiao et al. 2023): per-input-channel scaling
from calibration activations, then quantization.

    >>> ns.create("awq", bits=4, group_size=128)                  # weight-only, alpha searched per group
    >>> ns.create("smoothquant", alpha=0.5)                       # W8A8: int8 weights, per-token int8 activations

Each layer group (the layers reading one input) gets one scale s; every Linear in it
becomes a ScaledLinear (W diag(s), input * 1/s kept explicit: in the encoder blocks
this library meets, each input is a LayerNorm output that also feeds the residual, or
a GELU output, so no earlier op can absorb 1/s exactly) or, for smoothquant's
execute = "int8", an Int8DynamicLinear carrying the same input scale.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from netshrink.functional.awq import awq_search, smooth_scale
from netshrink.functional.gptq import rtn_quantize
from netshrink.functional.hessian import HessianAccumulator
from netshrink.methods.calibrated.base import OneShot
from netshrink.methods.calibrated.kernels import choose_kernel
from netshrink.methods.calibrated.layerwise import replace
from netshrink.runtime.int8_dynamic import Int8DynamicLinear
from netshrink.runtime.scaled_linear import ScaledLinear


def _plain(group) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in group if type(m) is nn.Linear]


@dataclass
class AWQ(OneShot):
    name = "awq"
    summary = "AWQ activation-aware weight quantization: s = mean|x|^alpha, alpha searched per layer (Lin et al. 2024)"
    needs_hessian = False
    keep_rows = 2048               # sampled input rows for the output-error search

    bits: int = 4
    granularity: Literal["channel", "group"] = "group"
    group_size: int = 128
    symmetric: bool = False
    grid: int = 20                 # alphas 0, 1/grid, ..., (grid-1)/grid

    def validate(self):
        super().validate()
        self.check(2 <= self.bits <= 8, "bits", "an integer in 2..8")
        self.check(self.group_size >= 1, "group_size", "an integer >= 1")
        self.check(self.grid >= 1, "grid", "an integer >= 1")

    def _quant(self, cols: int):
        g = self.group_size if self.granularity == "group" and cols % self.group_size == 0 else 0
        return lambda w: rtn_quantize(w, bits=self.bits, group_size=g, symmetric=self.symmetric)

    def process(self, model: nn.Module, group: list[tuple[str, nn.Module]], stats: HessianAccumulator) -> None:
        group = _plain(group)
        if not group:
            return
        weights = [m.weight.detach().float() for _, m in group]
        quant = self._quant(weights[0].shape[1])
        s, alpha, err = awq_search(weights, stats.rows, stats.mean_abs, quant, grid=self.grid)
        for name, mod in group:
            new = ScaledLinear.from_linear(mod, s)
            with torch.no_grad():
                new.weight.copy_(quant(new.weight.detach()))
            replace(model, name, new)
            self.report_[name] = {"alpha": alpha, "error": err}


@dataclass
class SmoothQuant(OneShot):
    name = "smoothquant"
    summary = "SmoothQuant W8A8: s = max|x|^a / max|w|^(1-a) moves outliers into weights; int8 kernels (Xiao et al. 2023)"
    needs_hessian = False

    alpha: float = 0.5
    # "int8": Int8DynamicLinear (int8 weights per channel, per-token int8 activations);
    # "float": only the scaling (ScaledLinear), for a later `gptq` with execute = "int8".
    execute: Literal["int8", "float"] = "int8"
    act: Literal["token", "tensor", "token_scale"] = "token"
    kernel: Literal["auto", "measure", "fbgemm", "fp32", "by_size"] = "auto"

    def validate(self):
        super().validate()
        self.check(0.0 <= self.alpha <= 1.0, "alpha", "in [0, 1]")

    def process(self, model: nn.Module, group: list[tuple[str, nn.Module]], stats: HessianAccumulator) -> None:
        group = _plain(group)
        if not group:
            return
        s = smooth_scale(stats.abs_max, [m.weight.detach().float() for _, m in group], self.alpha)
        for name, mod in group:
            if self.execute == "float":
                replace(model, name, ScaledLinear.from_linear(mod, s))
                self.report_[name] = {"alpha": self.alpha}
                continue
            q = Int8DynamicLinear.from_weight(mod.weight.detach().float() * s[None, :], mod.bias,
                                              input_scale=1.0 / s, act=self.act)
            self.report_[name] = {"alpha": self.alpha, **choose_kernel(q, stats.n / max(self.samples, 1), self.kernel)}
            replace(model, name, q)
