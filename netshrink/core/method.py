"""The Method base: a dataclass of hyperparameters with lifecycle hooks.

A method's fields are its hyperparameters, stored as given and validated in
`__post_init__` (through `check`), so a bad value fails when the recipe is read, not
an hour into training. Learned state lives in attributes ending in ``_``.

Lifecycle, driven by `compress_` or by a user's own loop through a Session:
    prepare(model, ctx)      attach re-parametrisations, compute scores
    loss(ctx) -> Tensor      extra loss term at each step (penalties, distillation)
    after_step(ctx)          masks, proximal operators, schedules
    finalize(model)          bake: leave plain / smaller / sparse / quantized modules
    deploy(model)            once all steps are finalized: swap in runtime kernels
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from netshrink.core.context import PrepareContext, StepContext
from netshrink.core.targets import Site, Targets, select
from netshrink.errors import RecipeError


@dataclass
class Method:
    """Base class of every compression method. Subclasses are dataclasses."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    # Whether the method keeps acting in the phases of later steps (distillation's
    # loss does; a pruning mask is baked at the end of its own phase).
    persistent: ClassVar[bool] = False
    # Whether `compress_` fine-tunes after prepare (post-training quantization does not).
    finetunes: ClassVar[bool] = True

    targets: Targets = field(default_factory=Targets)

    def __post_init__(self):
        if not isinstance(self.targets, Targets):
            self.targets = Targets.from_value(self.targets)
        self.validate()

    # -- validation -------------------------------------------------------------
    def validate(self) -> None:
        """Raise RecipeError for out-of-range values. Override in subclasses."""

    def check(self, ok: bool, field_name: str, rule: str) -> None:
        """`self.check(0 <= self.sparsity < 1, "sparsity", "in [0, 1)")`."""
        if not ok:
            raise RecipeError(
                f"{self.name}: {field_name} = {getattr(self, field_name)!r} is out of range; it must be {rule}")

    # -- lifecycle --------------------------------------------------------------
    def sites(self, model: nn.Module) -> list[Site]:
        return select(model, self.targets)

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        """Attach re-parametrisations / compute what the method needs."""

    def loss(self, ctx: StepContext) -> torch.Tensor | None:
        return None

    def after_step(self, ctx: StepContext) -> None:
        """Called after every optimiser step."""

    def finalize(self, model: nn.Module) -> None:
        """Bake: leave the model with plain (smaller / sparse / quantized) modules."""

    def deploy(self, model: nn.Module) -> None:
        """After every step of the recipe has finalized: swap in runtime kernels
        (e.g. CSR sparse layers). Deferred to the very end so that later steps
        (k-means, quantization) still see the plain layers an earlier step left."""

    # -- (de)serialisation -------------------------------------------------------
    def params(self) -> dict:
        """The hyperparameters as TOML-ready values (targets included)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Targets):
                v = v.to_value()
                if not v:
                    continue
            out[f.name] = v
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_params(cls, params: dict) -> "Method":
        """Build from a TOML table, with messages that name the bad field."""
        valid = cls.field_names()
        unknown = [k for k in params if k not in valid]
        if unknown:
            raise RecipeError(f"{cls.name}: unknown field(s) {unknown}; valid fields: {', '.join(valid)}")
        hints = typing.get_type_hints(cls)
        kwargs = {k: _coerce(cls.name, k, v, hints.get(k)) for k, v in params.items()}
        try:
            return cls(**kwargs)
        except RecipeError:
            raise
        except (TypeError, ValueError) as e:
            raise RecipeError(f"{cls.name}: {e}") from None


def _coerce(method: str, fname: str, value, hint):
    """Check a TOML value against a field's annotation; ints widen to floats."""
    if hint is None or fname == "targets":
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Literal:
        if value not in args:
            raise RecipeError(f"{method}: {fname} = {value!r} is not one of {list(args)}")
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(method, fname, value, a)
            except RecipeError:
                continue
        raise RecipeError(f"{method}: {fname} = {value!r} has the wrong type (expected {hint})")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise RecipeError(f"{method}: {fname} = {value!r} has the wrong type (expected a number)")
    if hint in (int, bool, str) and not (type(value) is hint):
        raise RecipeError(f"{method}: {fname} = {value!r} has the wrong type (expected {hint.__name__})")
    if origin in (list, tuple) and not isinstance(value, (list, tuple)):
        raise RecipeError(f"{method}: {fname} = {value!r} has the wrong type (expected a list)")
    if origin is dict and not isinstance(value, dict):
        raise RecipeError(f"{method}: {fname} = {value!r} has the wrong type (expected a table)")
    if origin in (list, tuple):
        return list(value) if origin is list else tuple(value)
    return value
