"""Session: the hooks of a set of methods, for `fit` or a user's own loop.

    session = recipe.start(model, optimizer)
    for x, y in loader:
        loss = F.cross_entropy(model(x), y) + session.loss(x=x, y=y)
        loss.backward(); optimizer.step(); optimizer.zero_grad()
        session.after_step()
    session.finish()

`Session.start` prepares fresh clones of the recipe's methods (`session.methods`,
which hold what the run learns); the recipe itself is left unchanged. A Session built
directly from methods (`Session(model, [m])`, as `compress_` does per phase) uses
those very objects.
"""
from __future__ import annotations

import torch
from torch import nn

from netshrink.core.context import PrepareContext, StepContext
from netshrink.core.method import Method


class Session:
    def __init__(self, model: nn.Module, methods: list[Method], optimizer=None, total_steps=None):
        self.model, self.methods, self.optimizer = model, list(methods), optimizer
        self.total_steps, self.step = total_steps, 0

    @classmethod
    def start(cls, recipe, model, optimizer=None, *, data=None, total_steps=None) -> "Session":
        """Prepare every step of `recipe` at once; new trainable tensors that the
        re-parametrisations add are given to `optimizer` as a new param group."""
        before = {id(p) for p in model.parameters()}
        ctx = PrepareContext(data=data, finetune=recipe.finetune, steps_total=total_steps)
        methods = [m.clone() for m in recipe.methods]   # the recipe keeps no run state
        for m in methods:
            m.prepare(model, ctx)
        new = [p for p in model.parameters() if id(p) not in before and p.requires_grad]
        if optimizer is not None and new:
            optimizer.add_param_group({"params": new})
        return cls(model, methods, optimizer, total_steps)

    # Both call styles work: with a StepContext (from `fit`) or with keywords.
    def _ctx(self, ctx: StepContext | None, kw: dict) -> StepContext:
        if ctx is not None:
            return ctx
        return StepContext(model=self.model, step=self.step, steps_total=self.total_steps,
                           optimizer=self.optimizer, **kw)

    def loss(self, ctx: StepContext | None = None, **kw) -> torch.Tensor:
        ctx = self._ctx(ctx, kw)
        terms = [t for m in self.methods if (t := m.loss(ctx)) is not None]
        if not terms:
            return torch.zeros(())
        return torch.stack([t.reshape(()) for t in terms]).sum()

    def after_step(self, ctx: StepContext | None = None, **kw) -> None:
        ctx = self._ctx(ctx, kw)
        for m in self.methods:
            m.after_step(ctx)
        self.step += 1

    def finish(self) -> nn.Module:
        for m in self.methods:
            m.finalize(self.model)
        for m in self.methods:
            m.deploy(self.model)
        return self.model
