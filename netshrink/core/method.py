"""The Method base: a dataclass of hyperparameters with lifecycle hooks.

A method's fields are its hyperparameters. `__post_init__` checks every field
against its annotation (netshrink.core.fields: types, Literal choices, per-layer maps,
targets) and then `validate` checks ranges, so a bad value fails when the recipe is
read or the method built, not an hour into training. Learned state lives in
attributes ending in ``_``, and only on the copy a run works on: `compress_` and
`Session` run `clone()`s of the methods they are given (as scikit-learn's `clone`),
so a recipe is unchanged by a run and can compress a second model the same way.

Lifecycle, driven by `compress_` or by a user's own loop through a Session:
    prepare(model, ctx)      attach re-parametrisations, compute scores
    loss(ctx) -> Tensor      extra loss term at each step (penalties, distillation)
    after_step(ctx)          masks, proximal operators, schedules
    finalize(model)          bake: leave plain / smaller / sparse / quantized modules
    deploy(model)            once all steps are finalized: swap in runtime kernels
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from netshrink.core.context import PrepareContext, StepContext
from netshrink.core.fields import check_fields, unknown_field_message
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
    # A class attribute; kmeans overrides it with a property (its `finetune_centroids`).
    finetunes: ClassVar[bool] = True
    # Old field names -> what to write now, for the message a recipe with an old name gets.
    renamed: ClassVar[dict[str, str]] = {}

    targets: Targets = field(default_factory=Targets)

    def __post_init__(self):
        check_fields(self, self.name or type(self).__name__)
        self.validate()

    # -- validation -------------------------------------------------------------
    def validate(self) -> None:
        """Raise RecipeError for out-of-range values. Override in subclasses (types and
        Literal choices are already checked from the annotations)."""

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

    # -- copies -------------------------------------------------------------------
    def clone(self) -> "Method":
        """A fresh method with the same hyperparameters and no learned state: rebuilt
        from the fields (deep-copied, so the copies share no list or table)."""
        kw = {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}
        return type(self)(**kw)

    # -- (de)serialisation -------------------------------------------------------
    def params(self) -> dict:
        """The hyperparameters as TOML-ready values (targets and per-layer maps included)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if hasattr(v, "to_value"):
                v = v.to_value()
                if not v and f.name == "targets":
                    continue
            elif isinstance(v, tuple):
                v = _plain(v)
            out[f.name] = v
        return out

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if f.init]

    @classmethod
    def from_params(cls, params: dict) -> "Method":
        """Build from a TOML table, with messages that name the bad field."""
        valid = cls.field_names()
        unknown = [k for k in params if k not in valid]
        if unknown:
            raise RecipeError(unknown_field_message(cls.name, unknown[0], valid, cls.renamed))
        try:
            return cls(**params)
        except RecipeError:
            raise
        except (TypeError, ValueError) as e:
            raise RecipeError(f"{cls.name}: {e}") from None


def _plain(v):
    """Tuples (nested) as lists: the TOML value of a tuple field."""
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v
