"""compress_: run a recipe on a model, in place.

Each step is a phase: prepare → fine-tune (with the hooks of this step and of every
earlier persistent step, e.g. distillation) → finalize. When every step is done, each
method's `deploy` swaps in its runtime kernels (sparse CSR layers ...). The teacher of distillation
defaults to a frozen copy of the model as it was before compression.
"""
from __future__ import annotations

import copy
import functools

from torch import nn

from netshrink.core.context import PrepareContext
from netshrink.core.session import Session
from netshrink.pipeline.recipe import Recipe
from netshrink.train.loop import fit, steps_per_epoch


def compress_(model: nn.Module, recipe: Recipe, data=None, *, teacher: nn.Module | None = None,
              progress: bool = True) -> nn.Module:
    """Compress `model` in place with `recipe`, fine-tuning on `data`; returns it.

    >>> ns.compress_(model, ns.Recipe.from_toml("recipes/deep_compression.toml"), data=train)
    """
    if teacher is None:
        teacher = copy.deepcopy(model).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    persistent = []
    n = len(recipe.steps)
    for i, step in enumerate(recipe.steps, 1):
        method = step.method
        cfg = recipe.finetune_for(step)
        steps_total = steps_per_epoch(len(data), cfg.batch_size) * cfg.epochs if data is not None else 0
        ctx = PrepareContext(data=data, finetune=cfg, steps_total=steps_total, teacher=teacher,
                             fit=functools.partial(_fit_on, data=data, progress=progress))
        method.prepare(model, ctx)
        hooks = Session(model, persistent + [method], total_steps=steps_total)
        if data is not None and cfg.epochs > 0 and method.finetunes:
            fit(model, data, cfg, hooks=hooks, progress=progress, desc=f"step {i}/{n} {method.name}")
        if method.persistent:
            persistent.append(method)
        else:
            method.finalize(model)
    for method in persistent:
        method.finalize(model)
    for method in recipe.methods:
        method.deploy(model)
    return model.eval()


def _fit_on(model, cfg, hooks=None, *, data, progress, **kw):
    """`ctx.fit(model, cfg, hooks)` for methods that run their own training rounds."""
    return fit(model, data, cfg, hooks=hooks, progress=progress, **kw)
