"""What a method's hooks see at each training step and at prepare time."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from netshrink.core.batches import as_batches
from netshrink.errors import NetshrinkError, RecipeError


@dataclass
class PrepareContext:
    """Given to `Method.prepare`.

    data: the training Dataset (or None when the user runs their own loop).
    finetune: the TrainConfig of the phase that follows prepare.
    fit: `fit(model, config, hooks=None)` runs the trainer on `data`; methods that
         own several training rounds (lottery tickets, sensitivity) call it.
    steps_total: optimiser steps the coming fine-tuning phase will take (None if unknown).
    teacher: the model before compression (distillation losses, unlabelled data).
    loss: the run's loss, `compress_(..., loss=...)` (a name or a callable `loss(outputs,
          target)`); None: `finetune.loss`. Methods that score with a loss (taylor, OBD,
          loss-ranked depth pruning) use it through `train.losses.BatchLoss.of_context(ctx)`.
    """

    data: Any = None
    finetune: Any = None
    fit: Callable[..., Any] | None = None
    steps_total: int | None = None
    teacher: nn.Module | None = None
    extras: dict = field(default_factory=dict)
    batches: Any = None      # core.batches.Batches over `data` (None without data): iter / call / take
    loss: Any = None

    def __post_init__(self):
        if self.batches is None and self.data is not None:
            self.batches = as_batches(self.data)

    def num_samples(self) -> int:
        """Training samples in one pass; 0 without data or when the data cannot say
        (an iterable of batches): methods whose penalty scales with N then ask for
        `dataset_size`."""
        return (self.batches.num_samples() or 0) if self.batches is not None else 0

    def dataset(self, owner: str):
        """The map-style Dataset under `data`, for methods that split it themselves."""
        d = self.batches.data if self.batches is not None else None
        d = getattr(d, "dataset", d) if isinstance(d, DataLoader) else d
        if d is None or not hasattr(d, "__len__") or not hasattr(d, "__getitem__"):
            raise RecipeError(f"{owner}: needs a map-style Dataset (it splits off a validation part); "
                              f"got {type(d).__name__}")
        return d


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
    batch: Any = None        # the raw batch (x is its first positional input, None for dict batches)
    batches: Any = None      # the Batches that read it: ctx.run(module) calls a module on it
    outputs: Any = None      # the model's raw output (logits is its main tensor)
    # the trainer's loss against the targets on this step (its resolved task loss: cross-entropy,
    # MSE, the user's ...); 0 where the trainer's loss distils (it has no target term); None: a
    # user's own loop that does not say (session.loss(..., task_loss=loss) does)
    task_loss: torch.Tensor | None = None

    def run(self, module: nn.Module):
        """`module`'s raw output on this step's batch (a teacher, a probe), through the adapter."""
        if self.batch is not None:
            return (self.batches or as_batches(None)).call(module, self.batch)
        if self.x is None:
            raise NetshrinkError("this step has no batch: pass session.loss(x=x, y=y) or batch=...")
        return module(self.x)
