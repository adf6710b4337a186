"""Training settings: the budget of a baseline or of a fine-tuning phase.

Immutable (a frozen dataclass): one config is shared by every step of a recipe and
every run of it, so a change is a new config, `cfg.replace(epochs=3)`.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from netshrink.core.fields import check_fields, unknown_field_message
from netshrink.errors import RecipeError
from netshrink.train.losses import LOSSES


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 64
    optimizer: Literal["adam", "sgd", "adamw"] = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: Literal["cosine", "constant", "step"] = "cosine"
    seed: int = 0
    # the task loss (train/losses.py): "auto" = cross-entropy for integer targets, MSE for
    # float targets, distillation toward the pre-compression model where there are none
    loss: str = "auto"
    # "model": the model's own dtype; "bf16-mixed" / "fp16-mixed": autocast (Accelerate)
    precision: Literal["model", "bf16-mixed", "fp16-mixed"] = "model"

    def __post_init__(self):
        check_fields(self, "finetune")   # types and the Literal choices, from the annotations
        bad = []
        if not (isinstance(self.epochs, int) and self.epochs >= 0):
            bad.append(f"epochs = {self.epochs!r} must be an integer >= 0")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            bad.append(f"lr = {self.lr!r} must be a finite number > 0")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            bad.append(f"batch_size = {self.batch_size!r} must be an integer >= 1")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            bad.append(f"weight_decay = {self.weight_decay!r} must be >= 0")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay)):
            bad.append(f"weight_decay = {self.weight_decay!r} must be finite")
        if self.loss not in LOSSES:
            bad.append(f"loss = {self.loss!r} must be one of {', '.join(LOSSES)}")
        if bad:
            raise RecipeError("finetune: " + "; ".join(bad))

    @classmethod
    def from_dict(cls, d: dict | None) -> "TrainConfig":
        d = dict(d or {})
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in d if k not in valid]
        if unknown:
            raise RecipeError(unknown_field_message("finetune", unknown[0], valid))
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def replace(self, **kw) -> "TrainConfig":
        return dataclasses.replace(self, **kw)
