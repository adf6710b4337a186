"""`gptq`: GPTQ one-shot weight quantization (Frantar et al. 2023), layer by layer.

    >>> ns.create("gptq", bits=4, group_size=128, act_order=True)

execute = "float": the weight stays an fp32 tensor holding the dequantized values (each
group exactly on its integer grid, which the codec's grid encoding stores as scales +
entropy-coded codes). execute = "int8": per output channel, the codes (symmetric, or
asymmetric with a zero point per channel, which fbgemm takes exactly) go into an
Int8DynamicLinear that runs fbgemm's int8 kernel with the activations quantized as `act`
says (per token, per tensor, or "static": one calibrated range per layer, searched, with
`outlier_channels` kept exact); `fuse` runs the layers of one input as one GEMM. An earlier
`smoothquant` step with execute = "float" leaves its input scale in the module, which is kept
(`fold`: moved into the layer producing that input, where exact).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from netshrink.core.batches import as_batches
from netshrink.core.context import PrepareContext
from netshrink.functional.gptq import gptq_quantize
from netshrink.functional.hessian import HessianAccumulator
from netshrink.core.targets import PerLayer
from netshrink.methods.calibrated.base import OneShot, hessian_for, input_scale_of, layer_value
from netshrink.methods.calibrated.kernels import choose_kernel
from netshrink.methods.calibrated.layerwise import Calibration, replace
from netshrink.methods.calibrated.scaling import (CLIP_GRID, SEARCH_ROWS, best_static_range, fold_input_scales,
                                                  fuse_groups, main_outputs, static_range)
from netshrink.runtime.int8_dynamic import Int8DynamicLinear


@dataclass
class GPTQ(OneShot):
    name = "gptq"
    summary = "GPTQ one-shot quantization (2-8 bits, Hessian from calibration, act-order, groups; Frantar et al. 2023)"

    bits: int = 4
    per_layer: PerLayer[int] = field(default_factory=PerLayer)   # bits by target pattern
    granularity: Literal["channel", "group"] = "group"
    group_size: int = 128
    symmetric: bool = False
    act_order: bool = True
    damp: float = 0.01            # fraction of mean(diag H) added to the diagonal
    block_size: int = 128         # columns per lazy batch update
    calibration: Literal["minmax", "mse"] = "minmax"   # how each group's scale is chosen
    execute: Literal["float", "int8"] = "float"
    act: Literal["token", "tensor", "token_scale", "static"] = "token"  # execute = "int8": activation quantization
    outlier_channels: int = 8     # act "static": input channels kept exact beside the int8 GEMM
    kernel: Literal["auto", "measure", "fbgemm", "fp32", "by_size"] = "auto"  # execute = "int8": "auto" a shape rule (reproducible), "measure" timed here, or forced
    # execute = "int8": the layers of one input group (q / k / v) as one GEMM, kept where the
    # model's outputs stay those of the unfused layers (smoothquant's `fuse`); act "static":
    # the group then shares one range, chosen by the members' summed output error
    fuse: bool = False
    # execute = "int8": an earlier smoothquant step's input scale moved into the int8 layer that
    # produces that input, where exact (smoothquant's `fold`: the value projection takes
    # attention's output projection's 1/s, one pass over its input fewer per call)
    fold: bool = False
    check_samples: int = 32       # calibration samples of the fusion's and the fold's end-to-end checks

    def validate(self):
        super().validate()
        self.check(2 <= self.bits <= 8, "bits", "an integer in 2..8")
        self.check(all(isinstance(v, int) and 2 <= v <= 8 for _, v in self.per_layer.items()), "per_layer",
                   "bits in 2..8 for every pattern")
        self.check(self.group_size >= 1, "group_size", "an integer >= 1")
        self.check(0.0 <= self.damp < 1.0, "damp", "in [0, 1)")
        self.check(self.block_size >= 1, "block_size", "an integer >= 1")
        if self.execute == "int8":
            self.check(self.granularity == "channel", "granularity", "'channel' when execute = 'int8'")
            if self.act == "static":
                top = max([self.bits] + [v for _, v in self.per_layer.items()])
                self.check(top <= 7, "bits", '<= 7 (and per_layer too) with act "static": codes within [-64, 64]')
        self.check(self.outlier_channels >= 0, "outlier_channels", "an integer >= 0")
        self.check(not self.fuse or self.execute == "int8", "fuse", "false unless execute = 'int8'")
        self.check(not self.fold or self.execute == "int8", "fold", "false unless execute = 'int8'")
        self.check(self.check_samples >= 1, "check_samples", "an integer >= 1")

    @property
    def keep_rows(self) -> int:        # act "static": sampled input rows to pick each layer's range on
        return SEARCH_ROWS if (self.execute == "int8" and self.act == "static") else 0

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self._groups: list[tuple[list[str], float]] = []
        late = (self.fuse or self.fold) and ctx.data is not None
        if late:
            data = as_batches(ctx.data)
            checks = Calibration(self.check_samples, self.calib_batch).batches(data)
            before = main_outputs(model, data, checks) if self.fold else None   # the fold's yardstick
        super().prepare(model, ctx)
        if late and self.fold:          # before fusing: a fused group's members are no longer plain layers
            fold_input_scales(model, data, self._groups, self.report_, checks, before)
        if late and self.fuse:
            fuse_groups(model, data, self._groups, self.report_, self.kernel, checks)
        self._groups = []

    def process(self, model: nn.Module, group: list[tuple[str, nn.Module]], stats: HessianAccumulator) -> None:
        made = []                      # execute "int8": (name, the layer replaced, its int8 module)
        for name, mod in group:
            g = self.group_size if self.granularity == "group" else 0
            if g and mod.weight.shape[1] % g:
                g = 0      # a layer whose width the group does not divide: per channel
            bits = layer_value(self, name, mod, self.bits)
            res = gptq_quantize(mod.weight.detach().float(), hessian_for(mod, stats), bits=bits, group_size=g,
                                symmetric=self.symmetric, act_order=self.act_order, damp=self.damp,
                                block_size=self.block_size, calibration=self.calibration)
            self.report_[name] = {"loss": res.loss, "bits": bits, "group_size": g}
            if self.execute == "float":
                with torch.no_grad():
                    mod.weight.copy_(res.weight)
                continue
            scale = res.scale[:, 0]                                              # (out,)
            codes = torch.round(res.weight / scale[:, None].clamp(min=1e-12))    # code - zero point
            zero = None
            if not self.symmetric:     # GPTQ's codes 0 .. 2^b - 1 moved to -2^(b-1) .. 2^(b-1) - 1
                zero = res.zero_point[:, 0] - 2 ** (bits - 1)                    # (out,), int8 domain
                codes = codes + zero[:, None]
            c = input_scale_of(mod)
            k = min(self.outlier_channels, codes.shape[1]) if self.act == "static" else 0
            q = Int8DynamicLinear.from_codes(codes, scale, mod.bias, input_scale=c, act=self.act, outliers=k,
                                             zero_point=zero)
            if self.act == "static":   # the range of the GEMM's input x * c, from calibration
                q.set_static(*static_range(stats.lo, stats.hi, None if c is None else 1.0 / c, k))
            made.append((name, mod, q))
        if not made:
            return
        if self.act == "static" and stats.rows is not None:
            # each range shrunk where that has less output error on the sampled rows; one range
            # per group when fused and the members share their input scale (one quantized input)
            shared = self.fuse and all(_same(m.input_scale, made[0][2].input_scale) for _, _, m in made)
            for part in ([made] if shared else [[t] for t in made]):
                c = part[0][2].input_scale
                clip, _ = best_static_range([(q, mod) for _, mod, q in part], stats,
                                            None if c is None else 1.0 / c, part[0][2].outliers)
                for name, _, _ in part:
                    self.report_[name]["clip"] = clip
        tokens = stats.n / max(self.samples, 1)
        for name, _, q in made:
            if self.act == "static":
                self.report_[name].setdefault("clip", CLIP_GRID[0])
            self.report_[name].update(choose_kernel(q, tokens, self.kernel))
            replace(model, name, q)
        self._groups.append(([name for name, _, _ in made], tokens))


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))
