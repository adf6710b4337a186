"""compress_: run a recipe on a model, in place.

Each step is a phase: prepare → fine-tune (with the hooks of this step and of every
earlier persistent step, e.g. distillation) → finalize. When every step is done, each
method's `deploy` swaps in its runtime kernels (sparse CSR layers ...). The teacher of distillation
defaults to a frozen copy of the model as it was before compression.

The methods of the recipe are never run themselves: each run works on clones, so a
recipe holds hyperparameters only, before and after (`Run.methods` holds the fitted
copies).
"""
from __future__ import annotations

import contextlib
import copy
import functools
from dataclasses import dataclass

import torch
from torch import nn

from netshrink.core.batches import as_batches, model_dtype
from netshrink.core.context import PrepareContext
from netshrink.core.method import Method
from netshrink.core.session import Session
from netshrink.core.targets import Targets, select
from netshrink.errors import NetshrinkError
from netshrink.pipeline.recipe import Recipe
from netshrink.train.loop import fit


@dataclass
class Run:
    """What one run of a recipe leaves: the model, and the run's own copy of every
    step's method, holding what it learned (`sites_`, `removed_`, `ranks_` ...).
    The recipe that was run is unchanged."""

    model: nn.Module
    methods: list[Method]

    def method(self, name: str) -> Method:
        """The fitted method of the first step named `name`."""
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(f"no step {name!r} in this run ({', '.join(m.name for m in self.methods)})")


def run_recipe(model: nn.Module, recipe: Recipe, data=None, *, teacher: nn.Module | None = None,
               progress: bool = True, extras: dict | None = None, loss=None, forward=None,
               target=None, n_inputs: int | None = None) -> Run:
    """Compress `model` in place with `recipe`, fine-tuning on `data`.

    Every step runs on a fresh `clone()` of its method, so `recipe` is left as it was
    and can compress another model with identical results. `extras` reaches every
    method's `ctx.extras` (an example input for structured pruning, a probe ...).
    `data` is anything core.batches reads; `forward`, `target`, `n_inputs` are its batch
    rules (DEVELOPERS.md "Batches"). `loss`: a name (train/losses.py) or a callable
    `loss(outputs, target)`, overriding `[finetune] loss`; unlabelled data distils
    toward `teacher` (default: the model as it was before compression).

    >>> run = ns.run_recipe(model, ns.Recipe.from_toml("recipes/deep_compression.toml"), data=train)
    >>> run.method("kmeans").k_
    """
    if teacher is None:
        teacher = copy.deepcopy(model).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    methods = [step.method.clone() for step in recipe.steps]
    for method in methods:   # every step's target patterns, before any step trains (issue 14)
        if method.targets.include:
            select(model, Targets(include=list(method.targets.include)))
    if data is not None:
        data = as_batches(data, forward=forward, target=target, n_inputs=n_inputs)
    persistent = []
    n = len(recipe.steps)
    for i, (step, method) in enumerate(zip(recipe.steps, methods), 1):
        cfg = recipe.finetune_for(step)
        if isinstance(loss, str):
            cfg = cfg.replace(loss=loss)
        steps_total = (data.num_batches(cfg.batch_size) or 0) * cfg.epochs if data is not None else 0
        ctx = PrepareContext(data=data, finetune=cfg, steps_total=steps_total, teacher=teacher, loss=loss,
                             fit=functools.partial(_fit_on, data=data, progress=progress,
                                                   teacher=teacher, loss_fn=_callable(loss)),
                             extras=dict(extras or {}))
        with _dtype_guard(method, model):
            method.prepare(model, ctx)
        hooks = Session(model, persistent + [method], total_steps=steps_total)
        if data is not None and cfg.epochs > 0 and method.finetunes:
            fit(model, data, cfg, hooks=hooks, progress=progress, desc=f"step {i}/{n} {method.name}",
                teacher=teacher, loss_fn=_callable(loss))
        if method.persistent:
            persistent.append(method)
        else:
            with _dtype_guard(method, model):
                method.finalize(model)
    for method in persistent:
        with _dtype_guard(method, model):
            method.finalize(model)
    for method in methods:
        method.deploy(model)
    model.eval()
    return Run(model, methods)


def compress_(model: nn.Module, recipe: Recipe, data=None, *, teacher: nn.Module | None = None,
              progress: bool = True, extras: dict | None = None, loss=None, forward=None,
              target=None, n_inputs: int | None = None) -> nn.Module:
    """Compress `model` in place with `recipe`, fine-tuning on `data`; returns it.
    `run_recipe` does the same and also returns what each step learned.

    >>> ns.compress_(model, ns.Recipe.from_toml("recipes/deep_compression.toml"), data=train)
    """
    return run_recipe(model, recipe, data, teacher=teacher, progress=progress, extras=extras, loss=loss,
                      forward=forward, target=target, n_inputs=n_inputs).model


_DTYPE_WORDS = ("may not change the dtype", "not implemented for", "dtype", "BFloat16", "Double", "Half")


@contextlib.contextmanager
def _dtype_guard(method, model: nn.Module):
    """A method whose maths or re-parametrisation is float32-only, run on a float64 /
    bf16 / fp16 model: one message naming the method and the dtype, not torch's error."""
    dtype = model_dtype(model)
    try:
        yield
    except (NotImplementedError, ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if dtype in (None, torch.float32) or not any(w in msg for w in _DTYPE_WORDS):
            raise
        raise NetshrinkError(f"{method.name} does not support {dtype} models ({msg[:160]}); convert the model "
                             "with model.float() first (magnitude and distill run in any float dtype)") \
            from None


def _callable(loss):
    return loss if callable(loss) else None


def _fit_on(model, cfg, hooks=None, *, data, progress, **kw):
    """`ctx.fit(model, cfg, hooks)` for methods that run their own training rounds."""
    return fit(model, data, cfg, hooks=hooks, progress=progress, **kw)
