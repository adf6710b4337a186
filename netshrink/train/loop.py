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
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from netshrink.core.context import StepContext
from netshrink.train.config import TrainConfig
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


def _loader(data, batch_size: int, seed: int, shuffle: bool) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=g)


def fit(model: nn.Module, data, cfg: TrainConfig, *, hooks=None, optimizer=None,
        checkpoint: str | os.PathLike | None = None, progress: bool = True,
        desc: str = "train", loss_fn=None) -> dict:
    """Train `model` on `data` for `cfg.epochs` epochs.

    hooks: an object with `loss(ctx) -> Tensor|None` and `after_step(ctx)` (a Session),
           called at every step.
    checkpoint: a file path; the state is written there after every epoch and a run
           that finds it resumes from it.
    Returns {"loss": last epoch's mean loss, "epochs": epochs run}.
    """
    loss_fn = loss_fn or F.cross_entropy
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optimizer or make_optimizer(params, cfg)
    base_lrs = [g["lr"] for g in opt.param_groups]
    spe = steps_per_epoch(len(data), cfg.batch_size)
    steps_total = spe * cfg.epochs
    start_epoch, history = 0, {"loss": float("nan"), "epochs": cfg.epochs}
    if checkpoint and Path(checkpoint).exists():
        start_epoch = _load_checkpoint(checkpoint, model, opt)

    model.train()
    with progress_bar(total=steps_total, desc=desc, enabled=progress) as bar:
        bar.advance(start_epoch * spe)
        for epoch in range(start_epoch, cfg.epochs):
            torch.manual_seed(cfg.seed * 100_003 + epoch)
            total, count = 0.0, 0
            for i, (x, y) in enumerate(_loader(data, cfg.batch_size, cfg.seed * 7919 + epoch, True)):
                step = epoch * spe + i
                for g, base in zip(opt.param_groups, base_lrs):
                    g["lr"] = base * lr_factor(cfg, step, steps_total)
                logits = model(x)
                loss = loss_fn(logits, y)
                ctx = StepContext(model=model, x=x, y=y, logits=logits, step=step,
                                  steps_total=steps_total, epoch=epoch, optimizer=opt)
                if hooks is not None:
                    extra = hooks.loss(ctx)
                    if extra is not None:
                        loss = loss + extra
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if hooks is not None:
                    hooks.after_step(ctx)
                total += loss.item() * len(x)
                count += len(x)
                bar.advance(1)
            history["loss"] = total / max(count, 1)
            if checkpoint:
                _save_checkpoint(checkpoint, model, opt, epoch + 1)
    if checkpoint:
        with contextlib.suppress(FileNotFoundError):  # another process may have finished first
            os.remove(checkpoint)
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, data, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of the whole dataset, in order, in eval mode."""
    was = model.training
    model.eval()
    outs, ys = [], []
    for x, y in _loader(data, batch_size, 0, False):
        outs.append(model(x))
        ys.append(y)
    model.train(was)
    return torch.cat(outs), torch.cat(ys)


def evaluate(model: nn.Module, data, reference: nn.Module | None = None) -> float:
    """Accuracy on labelled data; with `reference`, agreement with its predictions."""
    logits, y = predict(model, data)
    if reference is not None:
        y = predict(reference, data)[0].argmax(1)
    return float((logits.argmax(1) == y).float().mean())


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
