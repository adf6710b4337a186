"""Dependency analysis: which tensor slices must shrink together.

The model is traced with torch.fx and run once on an example input. Every tensor
carries a *label*: for each index of its channel dimension, the id of the "unit"
(an output channel / neuron / hidden unit) that index belongs to. A producer
(Conv, Linear, LSTM, Embedding) creates new units; consumers record the weight
columns each unit feeds ("slots"); element-wise ops pass labels through; a
residual addition unifies its operands' units index by index; concatenation joins
labels (so offsets come for free); flatten repeats a channel's unit over the
spatial positions it spreads to. Units are merged with union-find; a merged unit
(a *component*) is removed as a whole. Units that reach the model's input or
output, or that an op couples in ways a removal would change (LayerNorm, grouped
conv, softmax over channels), are pinned.

Blocks whose inside is analysed by rule rather than traced (Hugging Face BERT
layers, nn.TransformerEncoderLayer, nn.MultiheadAttention) are opaque leaves: their
inputs and outputs are pinned, their internal groups (heads, FFN neurons) are
closed (every slot inside the block) and come from `netshrink.structure.blocks`.

Tracing: torch.fx first (a tracer that runs the example, see tracer.py). Its graph
must reproduce the model's outputs on the example; if fx cannot trace the model, or
its graph takes another path than the model (`isinstance(x, torch.Tensor)` is False
for an fx proxy), the model is traced with torch.export instead and the ATen graph is
analysed (see exported.py). If neither works, only closed block groups are offered
(or a NetshrinkError names both reasons).

Anything the analysis does not know raises a NetshrinkError naming the module and
the op, so a shrink is never silently wrong.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from netshrink.core.reparam import Reparam
from netshrink.errors import NetshrinkError
from netshrink.structure.blocks import block_groups, block_producer_dims
from netshrink.structure.exported import AtenLabelInterpreter, export_graph
from netshrink.structure.groups import Component, DependencyGraph, Group, Units
from netshrink.structure.interpreter import LabelInterpreter
from netshrink.structure.tracer import example_inputs, placeholder_values, trace

__all__ = ["Component", "DependencyGraph", "Group", "analyze"]


def analyze(model: nn.Module, example) -> DependencyGraph:
    """The groups of coupled units of `model`, found on the graph traced with torch.fx
    and run on `example`: a tensor, a tuple of positional inputs, or a dict of keyword
    inputs (`model(**example)`, as a Hugging Face batch).

    >>> g = analyze(ns.zoo.models.create("resnet_small"), torch.zeros(1, 1, 28, 28))
    >>> [grp.name for grp in g.groups][:2]
    >>> g = analyze(bert, {"input_ids": ids, "attention_mask": mask})
    """
    for name, m in model.named_modules():
        if hasattr(m, "parametrizations") and any(isinstance(p, Reparam) for ps in m.parametrizations.values()
                                                  for p in ps):
            raise NetshrinkError(f"structure: module {name!r} still has re-parametrisations "
                                 f"({', '.join(m.parametrizations.keys())}); bake them before a structural shrink")
    graph = _analyze(model, example)
    # the model's own parametrisations (torch's weight_norm ...): a computed tensor cannot be sliced
    fixed = {(n, p) for n, m in model.named_modules() if hasattr(m, "parametrizations") for p in m.parametrizations}
    if fixed:
        graph.groups = [g for g in graph.groups
                        if not any((s[0], s[1]) in fixed for c in g.components for s, _ in c.slots)]
    return graph


def _analyze(model: nn.Module, example) -> DependencyGraph:
    args, kwargs = example_inputs(example)
    why_fx = ""
    try:
        gm = trace(model, args, kwargs)
        why_fx = _diverges(model, gm, args, kwargs)
    except NetshrinkError:
        raise
    except Exception as e:  # unsupported Python on proxies (torch.finfo(x.dtype), iterating a tensor ...)
        why_fx = _short(e)
    if why_fx:
        return _analyze_exported(model, args, kwargs, why_fx)
    units = Units()
    runner = LabelInterpreter(gm, units)
    _run(model, runner, placeholder_values(args, kwargs))
    return _result(model, units, runner)


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


def _run(model, runner, inputs: list) -> None:
    with torch.no_grad():
        was = model.training
        model.eval()
        try:
            runner.run(*inputs)
        except NetshrinkError as e:  # fx's interpreter appends the node and a traceback: one message is enough
            raise NetshrinkError(str(e).split("\n")[0]) from None
        finally:
            model.train(was)


def _result(model, units: Units, runner) -> DependencyGraph:
    ok = {p for p, fine in runner.attention_ok.items() if fine}
    return DependencyGraph(groups=units.groups() + block_groups(model, ok),
                           producer_dims={**block_producer_dims(model), **runner.producer_dims})


def _diverges(model: nn.Module, gm, args: tuple, kwargs: dict) -> str:
    """Empty if the traced graph gives the model's outputs on the example, else why not."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            want = tree_leaves(model(*args, **kwargs))
            got = tree_leaves(gm(*placeholder_values(args, kwargs)))
    except Exception as e:
        return f"the traced graph does not run ({_short(e)})"
    finally:
        model.train(was)
    if len(want) != len(got):
        return "the traced graph returns another structure than the model"
    for a, b in zip(want, got):
        if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
            return "the traced graph returns another structure than the model"
        if isinstance(a, torch.Tensor) and (a.shape != b.shape or not torch.allclose(
                a.float(), b.float(), rtol=1e-4, atol=1e-5, equal_nan=True)):
            return "the traced graph computes other outputs than the model on the example " \
                   "(Python in forward that a proxy takes another path through)"
    return ""


def _closed_only(model: nn.Module, why: str) -> DependencyGraph | None:
    """Only the self-contained block groups (heads and FFN neurons inside Transformer
    layers), which are safe whatever the rest of the model does; None if there are none."""
    closed = block_groups(model)
    if not closed:
        return None
    return DependencyGraph(groups=closed, producer_dims=block_producer_dims(model), traced=False,
                           untraced_reason=why)


def _analyze_exported(model: nn.Module, args: tuple, kwargs: dict, why_fx: str) -> DependencyGraph:
    """torch.fx failed: analyse the graph torch.export gives; failing that, offer only
    the closed block groups."""
    try:
        gm, inputs = export_graph(model, args, kwargs)
    except NetshrinkError:
        raise
    except Exception as e:
        why = f"torch.fx: {why_fx}; torch.export: {_short(e)}"
        graph = _closed_only(model, why)
        if graph is None:
            raise NetshrinkError(f"structure: cannot trace {type(model).__name__} ({why})") from None
        return graph
    units = Units()
    runner = AtenLabelInterpreter(gm, units, model)
    try:
        _run(model, runner, inputs)
    except NetshrinkError as e:  # an op the analysis does not know: closed groups are still safe
        graph = _closed_only(model, f"torch.fx: {why_fx}; on the torch.export graph: {e}")
        if graph is None:
            raise
        return graph
    graph = _result(model, units, runner)
    graph.untraced_reason = f"traced with torch.export (torch.fx: {why_fx})"
    return graph
