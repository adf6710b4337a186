"""The base of the one-shot methods: calibration data, target Linears, the sequential pass."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from netshrink.core.batches import as_batches, model_device
from netshrink.core.context import PrepareContext
from netshrink.core.method import Method
from netshrink.core.targets import Site, select
from netshrink.errors import RecipeError
from netshrink.functional.hessian import HessianAccumulator
from netshrink.methods.calibrated.layerwise import Calibration, collect, discover
from netshrink.runtime.scaled_linear import ScaledLinear

LINEAR_TYPES = (nn.Linear, ScaledLinear)


@dataclass
class OneShot(Method):
    """Runs `process(model, group, stats)` on each group of target Linears in forward order.
    Subclasses set which statistics they need (`needs_hessian`, `keep_rows`)."""

    finetunes = False
    needs_hessian: ClassVar[bool] = True
    keep_rows: ClassVar[int] = 0

    samples: int = 128          # calibration samples (the first of the data)
    calib_batch: int = 16       # batch size of the calibration passes

    def validate(self):
        self.check(self.samples >= 1, "samples", "an integer >= 1")
        self.check(self.calib_batch >= 1, "calib_batch", "an integer >= 1")

    def target_modules(self, model: nn.Module) -> dict[str, nn.Module]:
        if not (self.targets.include or self.targets.exclude):   # default: every Linear (plain or rescaled)
            return {n: m for n, m in model.named_modules() if isinstance(m, LINEAR_TYPES)}
        sites = select(model, self.targets)
        bad = [s.name for s in sites if not isinstance(s.module, LINEAR_TYPES) or s.param_name != "weight"]
        if bad:
            raise RecipeError(f"{self.name}: works on Linear weights only; not Linear weights: {bad[:4]} "
                              "(restrict targets, e.g. 'type:Linear')")
        return {s.module_name: s.module for s in sites}

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        if ctx.data is None:
            raise RecipeError(f"{self.name}: needs calibration data (compress_(model, recipe, data=...))")
        device = model_device(model)
        if getattr(self, "execute", None) == "int8" and device.type != "cpu":
            raise RecipeError(f"{self.name}: execute = 'int8' runs fbgemm's int8 kernels, which are CPU-only, and the "
                              f"model is on {device}: compress a CPU copy (model.cpu()), or keep execute = 'float' "
                              "(the weights on their integer grids, computed in the model's own dtype)")
        data = as_batches(ctx.data)
        batches = Calibration(self.samples, self.calib_batch).batches(data)
        if not batches:
            raise RecipeError(f"{self.name}: the calibration data is empty")
        modules = self.target_modules(model)
        per_layer = getattr(self, "per_layer", None)
        if per_layer:   # a pattern matching none of the target layers is a TargetError
            per_layer.resolve([Site(n, "weight", m) for n, m in modules.items()], None)
        was = model.training
        model.eval()                      # dropout off: calibrate the model as it will run
        self.report_: dict[str, dict] = {}
        try:
            for group in discover(model, modules, data, batches[0]):
                stats = collect(model, group, data, batches, hessian=self.needs_hessian, keep_rows=self.keep_rows)
                if stats.n == 0:
                    continue
                self.process(model, group, stats)
        finally:
            model.train(was)

    def process(self, model: nn.Module, group: list[tuple[str, nn.Module]], stats: HessianAccumulator) -> None:
        raise NotImplementedError


def layer_value(method, name: str, module: nn.Module, default):
    """The method's `per_layer` value for this layer (its default where no pattern matches)."""
    per_layer = getattr(method, "per_layer", None)
    return per_layer.value_of(Site(name, "weight", module), default) if per_layer else default


def input_scale_of(module: nn.Module) -> torch.Tensor | None:
    """(in,) the per-channel factor a ScaledLinear applies to its input before the weight."""
    return module.input_scale if isinstance(module, ScaledLinear) else None


def hessian_for(module: nn.Module, stats: HessianAccumulator) -> torch.Tensor:
    """H of the weight's own input: diag(c) H diag(c) when the module rescales its input by c."""
    h = stats.h
    c = input_scale_of(module)
    return h if c is None else h * c[:, None] * c[None, :]
