"""Quantization methods: post-training (`quantize`), quantization-aware training (`qat`),
binary (`binary`, BinaryConnect / XNOR-style scaling) and ternary (`ternary`, TWN).

All of them leave plain float weights holding few distinct values (a per-tensor b-bit
weight holds <= 2^b), which the codec stores as a codebook + packed, entropy-coded
indices. `quantize` / `qat` with `execute = "int8"` (8 bits) instead replace Linear
layers by `Int8Linear`, which runs real int8 kernels.

    >>> ns.create("quantize", bits=4, granularity="channel", calibration="mse")
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from netshrink.core.context import PrepareContext, StepContext
from netshrink.core.method import Method
from netshrink.core.reparam import attach, bake, original, reparams_of
from netshrink.core.targets import Site
from netshrink.errors import RecipeError
from netshrink.functional.quantize import fake_quantize_activation
from netshrink.reparams.quant import Binarize, FakeQuant, Ternarize, ste
from netshrink.runtime.int8_linear import Int8Linear


def _last_is(site: Site, kind: type) -> bool:
    chain = reparams_of(site.module, site.param_name)
    return bool(chain) and isinstance(chain[-1], kind)


def _bake_mine(sites: list[Site], kind: type) -> None:
    """Bake the chains that end with this method's re-parametrisation (an earlier
    mask in the same chain is baked with it: the quantizer already saw its zeros)."""
    for site in sites:
        if _last_is(site, kind):
            bake(site.module, site.param_name)


@dataclass
class Quantize(Method):
    """Uniform post-training quantization: no fine-tuning, calibrated on the weights."""

    name = "quantize"
    summary = "uniform post-training quantization, 2-8 bits, per-tensor/channel/group, min-max/percentile/MSE"
    finetunes = False

    bits: int = 8
    granularity: Literal["tensor", "channel", "group"] = "channel"
    group_size: int = 64
    symmetric: bool = True
    calibration: Literal["minmax", "percentile", "mse"] = "minmax"
    percentile: float = 99.9
    # "float": bake quantized values into float weights (small on disk);
    # "int8": replace Linear layers by Int8Linear (real int8 kernels; bits = 8, symmetric, channel).
    execute: Literal["float", "int8"] = "float"

    calibrate_each_step = False

    def validate(self):
        self.check(2 <= self.bits <= 8, "bits", "an integer in 2..8")
        self.check(self.group_size >= 1, "group_size", ">= 1")
        self.check(50.0 < self.percentile <= 100.0, "percentile", "in (50, 100]")
        if self.execute == "int8":
            self.check(self.bits == 8, "bits", "8 when execute = 'int8'")
            self.check(self.symmetric, "symmetric", "true when execute = 'int8'")
            self.check(self.granularity == "channel", "granularity", "'channel' when execute = 'int8'")

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self.sites_ = self.sites(model)
        if self.execute == "int8":
            bad = [s.name for s in self.sites_ if type(s.module) is not nn.Linear or s.param_name != "weight"]
            if bad:
                raise RecipeError(f"{self.name}: execute = 'int8' runs Linear weights only; "
                                  f"restrict targets (e.g. 'type:Linear'); not Linear: {bad[:4]}")
        for site in self.sites_:
            try:
                rp = FakeQuant(site.tensor.detach(), bits=self.bits, symmetric=self.symmetric,
                               granularity=self.granularity, group_size=self.group_size,
                               calibration=self.calibration, percentile=self.percentile,
                               calibrate_each_step=self.calibrate_each_step)
            except ValueError as e:
                raise RecipeError(f"{self.name}: {site.name}: {e}") from None
            attach(site, rp)

    def finalize(self, model: nn.Module) -> None:
        _bake_mine(self.sites_, FakeQuant)
        if self.execute == "int8":
            # The baked weight is already on the int8 grid of the same (min-max,
            # per-channel) scales, so re-quantizing it in Int8Linear is exact.
            for site in self.sites_:
                name = site.module_name
                parent, _, leaf = name.rpartition(".")
                setattr(model.get_submodule(parent) if parent else model, leaf, Int8Linear.from_linear(site.module))


@dataclass
class QAT(Quantize):
    """Quantization-aware training: fake-quantized weights in the forward pass, the
    straight-through estimator in the backward pass, scales following the weights."""

    name = "qat"
    summary = "quantization-aware training: fake-quantized weights (+ optional 8-bit activations), STE"
    finetunes = True
    calibrate_each_step = True

    bits: int = 4
    # Also fake-quantize each target layer's input to 8 bits per batch during training,
    # the way Int8Linear's dynamic kernel quantizes it at run time (execute = "int8").
    activations: bool = False

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        super().prepare(model, ctx)
        self.hooks_ = [s.module.register_forward_pre_hook(_quantize_input) for s in self.sites_] \
            if self.activations else []

    def finalize(self, model: nn.Module) -> None:
        for h in self.hooks_:
            h.remove()
        super().finalize(model)


def _quantize_input(module, args):
    x = args[0]
    return (ste(x, fake_quantize_activation(x.detach())),) + tuple(args[1:])


@dataclass
class Binary(Method):
    """Binary weights alpha * sign(w) trained with real-valued shadow weights clipped to
    [-1, 1] (BinaryConnect); alpha = mean|W| per output channel (XNOR-Net/BWN), per
    tensor, or 1 (plain BinaryConnect)."""

    name = "binary"
    summary = "binary weights (BinaryConnect, shadow weights clipped to [-1,1]; XNOR alpha = mean|W| per filter)"

    scaling: Literal["channel", "layer", "none"] = "channel"
    clip: float = 1.0

    def validate(self):
        self.check(self.clip > 0, "clip", "> 0")

    def prepare(self, model, ctx):
        self.sites_ = self.sites(model)
        for site in self.sites_:
            attach(site, Binarize(self.scaling))

    @torch.no_grad()
    def after_step(self, ctx: StepContext) -> None:
        for site in self.sites_:
            if _last_is(site, Binarize):
                original(site.module, site.param_name).clamp_(-self.clip, self.clip)

    def finalize(self, model):
        _bake_mine(self.sites_, Binarize)


@dataclass
class Ternary(Method):
    """Ternary weight networks (Li & Liu 2016): {-alpha, 0, +alpha}, delta = 0.7 mean|W|."""

    name = "ternary"
    summary = "ternary weights (TWN): delta = 0.7 mean|W|, alpha = mean |w| above delta"

    delta_factor: float = 0.7

    def validate(self):
        self.check(0.0 < self.delta_factor < 2.0, "delta_factor", "in (0, 2)")

    def prepare(self, model, ctx):
        self.sites_ = self.sites(model)
        for site in self.sites_:
            attach(site, Ternarize(self.delta_factor))

    def finalize(self, model):
        _bake_mine(self.sites_, Ternarize)
