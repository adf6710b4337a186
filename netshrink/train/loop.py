"""fit / evaluate: the one training loop, with method hooks, progress and resume.

Determinism: every epoch reseeds torch from (seed, epoch) and shuffles with its own
generator, so a run killed mid-way and resumed from its last checkpoint ends with
exactly the same weights as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import torch
from torch import nn
from netshrink.core.batches import as_batches, batch_len, output_tensor, token_mask
from netshrink.core.context import StepContext
from netshrink.errors import NetshrinkError
from netshrink.train.config import TrainConfig
from netshrink.train.engine import Engine, is_main_process
from netshrink.train.losses import resolve
from netshrink.train.progress import progress_bar


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(cfg: TrainConfig, step: int, steps_total: int) -> float:
    """Multiplier of the base lr after `step` optimiser steps."""
    if cfg.schedule == "constant" or steps_total <= 0:
        return 1.0
    if cfg.schedule == "step":  # x0.1 at 50 % and 75 % of training
        return 0.1 ** ((step >= steps_total // 2) + (step >= 3 * steps_total // 4))
    return 0.5 * (1 + math.cos(math.pi * min(step, steps_total) / steps_total))


def steps_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def fit(model: nn.Module, data, cfg: TrainConfig, *, hooks=None, optimizer=None,
        checkpoint: str | os.PathLike | None = None, progress: bool = True,
        desc: str = "train", loss_fn=None, teacher: nn.Module | None = None) -> dict:
    """Train `model` on `data` for `cfg.epochs` epochs, where the model is (its device and
    dtype; `cfg.precision` for mixed precision; data parallel under torchrun, see engine.py).

    data: anything `core.batches.as_batches` reads (Dataset, DataLoader, list of batches,
           a Batches carrying the user's forward / target rules).
    loss_fn: a callable `loss(outputs, target)`; else `cfg.loss` (train/losses.py).
    teacher: the model before compression, for distillation losses (unlabelled data).
    hooks: an object with `loss(ctx) -> Tensor|None` and `after_step(ctx)` (a Session),
           called at every step.
    checkpoint: a file path; the state is written there after every epoch and a run
           that finds it resumes from it.
    Returns {"loss": last epoch's mean loss, "epochs": epochs run, "loss_name": ...}.
    """
    b = as_batches(data)
    engine = Engine(model, cfg.precision)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optimizer or make_optimizer(params, cfg)
    base_lrs = [g["lr"] for g in opt.param_groups]
    spe = batches_per_epoch(b, cfg.batch_size)
    steps_total = spe * cfg.epochs
    start_epoch, history = 0, {"loss": float("nan"), "epochs": cfg.epochs}
    if checkpoint and Path(checkpoint).exists():
        start_epoch = _load_checkpoint(checkpoint, model, opt)
    task, guard = None, None   # resolved on the first batch, from what the model returns

    net, opt = engine.prepare(model, opt)
    model.train()
    try:
        with progress_bar(total=steps_total, desc=desc, enabled=progress) as bar:
            bar.advance(start_epoch * spe)
            for epoch in range(start_epoch, cfg.epochs):
                torch.manual_seed(cfg.seed * 100_003 + epoch)
                total, count = 0.0, 0
                for i, full in enumerate(b.iter(cfg.batch_size, shuffle=True, seed=cfg.seed * 7919 + epoch)):
                    step = epoch * spe + i
                    for g, base in zip(opt.param_groups, base_lrs):
                        g["lr"] = base * lr_factor(cfg, step, steps_total)
                    batch, scale = engine.shard(full)
                    inputs, y = b.split(batch)
                    with engine.autocast():
                        outputs = b.call(net, batch)
                        if task is None:
                            task = resolve(loss_fn or cfg.loss, outputs, y, has_teacher=teacher is not None)
                            guard = LossGuard(task.name, allow_zero=task.distills)
                            history["loss_name"] = task.name
                        t_out = None
                        if task.distills:
                            with torch.no_grad():
                                t_out = b.call(teacher, batch)
                        loss = task(outputs, y, t_out)
                    guard.check(loss, step, epoch)
                    x = inputs.args[0] if inputs is not None and inputs.args else None
                    ctx = StepContext(model=model, x=x, y=y, logits=_main_tensor(outputs), step=step,
                                      steps_total=steps_total, epoch=epoch, optimizer=opt,
                                      batch=batch, batches=b, outputs=outputs,
                                      task_loss=loss.new_zeros(()) if task.distills else loss)
                    if hooks is not None:
                        extra = hooks.loss(ctx)
                        if extra is not None:
                            loss = loss + extra
                    opt.zero_grad(set_to_none=True)
                    engine.backward(loss * scale if scale != 1.0 else loss)
                    opt.step()
                    if hooks is not None:
                        hooks.after_step(ctx)
                    n = batch_len(batch) or 1
                    total += float(loss.detach()) * n
                    count += n
                    bar.advance(1)
                history["loss"] = total / max(count, 1)
                if guard is not None:
                    guard.end_epoch()
                if checkpoint and is_main_process():
                    _save_checkpoint(checkpoint, model, opt, epoch + 1)
                engine.barrier()
    finally:
        engine.unwrap(model)
    if checkpoint and is_main_process():
        with contextlib.suppress(FileNotFoundError):  # another process may have finished first
            os.remove(checkpoint)
    model.eval()
    return history


class LossGuard:
    """Stops a run whose loss is NaN / infinite, or exactly 0 on each of its first
    `zero_steps` steps or on its whole first epoch, if shorter (a loss that cannot train:
    e.g. cross-entropy over one output).
    A distillation loss may be 0: the model still equals its teacher."""

    def __init__(self, name: str, allow_zero: bool = False, zero_steps: int = 8):
        self.name, self.allow_zero, self.zero_steps, self.zeros = name, allow_zero, zero_steps, 0

    def check(self, loss: torch.Tensor, step: int, epoch: int) -> None:
        v = float(loss.detach())
        if not math.isfinite(v):
            raise NetshrinkError(f"fine-tuning stopped: the {self.name} loss is {v} at step {step} "
                                 f"(epoch {epoch}); lower the learning rate or check the data and targets")
        if not self.allow_zero and self.zeros >= 0:
            self.zeros = self.zeros + 1 if v == 0.0 else -1
            if self.zeros >= self.zero_steps:
                self._zero()

    def end_epoch(self) -> None:
        if not self.allow_zero and self.zeros > 0:
            self._zero()
        self.zeros = -1   # checked once: a loss that trains to exactly 0 later is fine

    def _zero(self):
        raise NetshrinkError(f"fine-tuning stopped: the {self.name} loss is exactly 0 on every one of the "
                             f"first {self.zeros} steps, so it cannot train the model; "
                             "check the loss against the model's outputs and targets")


def batches_per_epoch(b, batch_size: int) -> int:
    """Optimiser steps in one pass; data that cannot say its length is counted once."""
    n = b.num_batches(batch_size)
    if n is None:
        n = sum(1 for _ in b.iter(batch_size))
    return n


def _main_tensor(outputs):
    try:
        return output_tensor(outputs)
    except NetshrinkError:
        return None


@torch.no_grad()
def predict(model: nn.Module, data, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(outputs, targets) of the whole data, in order, in eval mode; outputs are the main
    tensor of each output (core.batches.output_tensor), targets None for unlabelled data."""
    out, y, _ = predict_positions(model, data, batch_size)
    return out, y


@torch.no_grad()
def predict_positions(model: nn.Module, data, batch_size: int = 512
                      ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """predict's (outputs, targets) and the (N, T) bool mask of real tokens where every
    batch has an attention_mask matching its (N, T, ...) output (core.batches.token_mask),
    else None. Batches padded to different lengths are padded to the longest (with zeros,
    marked False in the mask), so that their outputs concatenate."""
    b = as_batches(data)
    was = model.training
    model.eval()
    outs, ys, masks = [], [], []
    for batch in b.iter(batch_size):
        outs.append(output_tensor(b.call(model, batch)))
        inputs, y = b.split(batch)
        ys.append(y)
        masks.append(token_mask(inputs.kwargs if inputs is not None else None, outs[-1]))
    model.train(was)
    labelled = all(torch.is_tensor(y) for y in ys)
    if all(m is not None for m in masks) and masks:
        width = max(o.shape[1] for o in outs)
        outs = [torch.nn.functional.pad(o, (0, 0) * (o.dim() - 2) + (0, width - o.shape[1])) for o in outs]
        mask = torch.cat([torch.nn.functional.pad(m, (0, width - m.shape[1])) for m in masks])
    else:
        mask = None
    return torch.cat(outs), (torch.cat([y.to(outs[0].device) for y in ys]) if labelled and ys else None), mask


def evaluate(model: nn.Module, data, reference: nn.Module | None = None) -> float:
    """Accuracy on labelled classification data; with `reference`, agreement with its predictions."""
    logits, y = predict(model, data)
    if reference is not None:
        y = predict(reference, data)[0].argmax(-1)
    if y is None:
        raise NetshrinkError("accuracy needs labels, and the data has none: pass a reference model "
                             "(agreement) or a metric")
    return float((logits.argmax(-1) == y).float().mean())


def _save_checkpoint(path, model, opt, epoch: int) -> None:
    # torch.save of tensors and plain containers only; read back with
    # weights_only=True, which refuses anything that would run code.
    tmp = f"{path}.{os.getpid()}.tmp"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch}, tmp)
    os.replace(tmp, path)


def _load_checkpoint(path, model, opt) -> int:
    state = torch.load(path, weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    return int(state["epoch"])
