"""What a method's hooks see at each training step and at prepare time."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn


@dataclass
class PrepareContext:
    """Given to `Method.prepare`.

    data: the training Dataset (or None when the user runs their own loop).
    finetune: the TrainConfig of the phase that follows prepare.
    fit: `fit(model, config, hooks=None)` runs the trainer on `data`; methods that
         own several training rounds (lottery tickets, sensitivity) call it.
    steps_total: optimiser steps the coming fine-tuning phase will take (None if unknown).
    """

    data: Any = None
    finetune: Any = None
    fit: Callable[..., Any] | None = None
    steps_total: int | None = None
    teacher: nn.Module | None = None
    extras: dict = field(default_factory=dict)


@dataclass
class StepContext:
    """Given to `Method.loss` and `Method.after_step` at every optimiser step."""

    model: nn.Module
    x: torch.Tensor | None = None
    y: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    step: int = 0            # optimiser steps taken in this phase, before this one
    steps_total: int | None = None
    epoch: int = 0
    optimizer: torch.optim.Optimizer | None = None
