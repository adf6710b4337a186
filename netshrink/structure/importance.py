"""How much each component (channel / neuron / hidden unit / head) matters.

Every criterion returns {group name: (n_components,) tensor}, higher = keep.
- l1 / l2: norm of the producer weights of the unit (Li et al. 2017 "Pruning filters";
  for a residual stream, summed over every convolution writing that channel).
- bn_scale: |gamma| of the BatchNorm after it (network slimming, Liu et al. 2017);
  a group with no BatchNorm falls back to the l2 norm.
- taylor: first-order Taylor (Molchanov et al. 2019): per batch (sum_s g_s w_s)^2 over
  the unit's parameters s (producer rows, biases, BatchNorm scale/shift), summed over
  batches: the squared change of the loss if the unit were removed. The loss is the
  run's (`loss=`: a train.losses.BatchLoss, a name or a callable; default auto: cross-
  entropy for class targets, MSE for float targets), read through the batch adapter.
- activation: mean |output| of the unit on data (what the unit actually emits; for an
  attention head, of its value projection, as for BERT's value layer).
- obs: the Optimal Brain Surgeon saliency of removing the unit's input columns from the
  Linears that read it, sum over output rows of w_M^T ((H^-1)_MM)^-1 w_M with H the
  damped Hessian of the Linear's calibration inputs plus a constant-1 channel (ZipLM,
  Kurtic et al. 2023; structure.reconstruct has the formula); a group no measured
  Linear reads falls back to l2.
- random: the baseline.

Criteria are callables in a registry, `fn(model, graph, *, data, batches, seed, loss)`;
`register_importance(name, fn)` adds a user's, and channel_prune's `importance`
field accepts every registered name.

    register_importance("first_weight", lambda model, graph, **kw: {...})
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from netshrink.core.batches import calibration_batches
from netshrink.errors import NetshrinkError
from netshrink.structure.blocks import MHA_TYPES
from netshrink.structure.groups import DependencyGraph
from netshrink.structure.reconstruct import consumer_stats, obs_scores
from netshrink.train.losses import as_batch_loss

Importance = Callable[..., dict]  # fn(model, graph, *, data, batches, seed, loss) -> {group name: (n,) tensor}


def _param(model, mod, param):
    return getattr(model.get_submodule(mod), param)


def _weight_slots(c, roles=("out",), params=None):
    return [s for s, r in c.slots if r in roles and (params is None or s[1] in params)]


def _norm_scores(model, graph, p: int) -> dict[str, torch.Tensor]:
    out = {}
    for g in graph.groups:
        vals = []
        for c in g.components:
            slots = [s for s in _weight_slots(c) if "bias" not in s[1]]  # bias, bias_ih_l0, in_proj_bias, bias_k
            tot = sum(float(_param(model, m, n).detach().select(d, i).abs().pow(p).sum()) for m, n, d, i in slots)
            vals.append(tot ** (1.0 / p))
        out[g.name] = torch.tensor(vals)
    return out


def _bn_scores(model, graph):
    l2 = _norm_scores(model, graph, 2)
    out = {}
    for g in graph.groups:
        has = [_weight_slots(c, ("norm",), ("weight",)) for c in g.components]
        if all(has):
            out[g.name] = torch.tensor([sum(float(_param(model, m, n).detach()[i].abs()) for m, n, d, i in s)
                                        for s in has])
        else:
            out[g.name] = l2[g.name]
    return out


def zero_gradient_check(loss, total: float, what: str) -> None:
    """A distillation loss (unlabelled data) at a model that still equals its teacher has a
    zero gradient: scores from it would all be 0, so say so instead of ranking by ties."""
    if loss.distills and total == 0.0:
        raise NetshrinkError(f"{what}: the {loss.name} loss (the data has no targets) has a zero gradient while "
                             "the model still equals its teacher, so every score would be 0; give labelled data "
                             "or a task loss (loss = 'mse' ...), or a criterion without gradients "
                             "(importance = 'activation' or 'l2')")


def _taylor_scores(model, graph, data, batches, loss=None):
    acc = {g.name: torch.zeros(len(g)) for g in graph.groups}
    loss = as_batch_loss(loss, "taylor importance")
    was = model.training
    model.eval()  # BatchNorm statistics stay as trained
    b, data_batches = calibration_batches(data, batches)
    grad_mass = 0.0
    try:
        for batch in data_batches:
            model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                loss(b, model, batch).backward()
            with torch.no_grad():
                for g in graph.groups:
                    for k, c in enumerate(g.components):
                        s = 0.0
                        for m, n, d, i in _weight_slots(c, ("out", "norm"), None):
                            p = _param(model, m, n)
                            if isinstance(p, nn.Parameter) and p.grad is not None:
                                gs = p.grad.select(d, i)
                                s += float((gs * p.detach().select(d, i)).sum())
                                grad_mass += float(gs.abs().sum())
                        acc[g.name][k] += s * s
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was)
    zero_gradient_check(loss, grad_mass, "taylor importance")
    return acc


def _activation_scores(model, graph, data, batches):
    sums = {}
    handles = []
    mods = dict(model.named_modules())

    def hook(name):
        def f(mod, inp, kwargs, out):
            if isinstance(mod, MHA_TYPES):  # a head's output: its value projection of the value input
                out = _value_projection(mod, inp[2] if len(inp) > 2 else kwargs["value"])
            elif isinstance(out, tuple):
                out = out[0]
            dim, positions = graph.producer_dims[name]
            dim = dim % out.dim()
            red = [d for d in range(out.dim()) if d != dim]
            a = out.detach().abs().mean(dim=red)  # (channels,)
            v = torch.tensor([float(a[p].sum()) for p in positions])
            sums[name] = sums.get(name, 0) + v
        return f

    for name in graph.producer_dims:
        handles.append(mods[name].register_forward_hook(hook(name), with_kwargs=True))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            b, data_batches = calibration_batches(data, batches)
            for batch in data_batches:
                b.call(model, batch)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {g.name: torch.tensor([sum(float(sums[m][j]) for m, j in c.producers if m in sums)
                                  for c in g.components]) for g in graph.groups}


def _value_projection(m: nn.Module, value: torch.Tensor) -> torch.Tensor:
    """v = value W_v^T + b_v of an attention module: (..., heads * head_dim)."""
    inner = m.num_heads * m.head_dim
    w = m.in_proj_weight[2 * inner:] if m.in_proj_weight is not None else m.v_proj_weight
    b = m.in_proj_bias[2 * inner:] if m.in_proj_bias is not None else None
    if value.is_nested:
        value = value.to_padded_tensor(0.0)
    return F.linear(value, w, b)


def obs_importance(model, graph, stats, *, damp: float = 0.01) -> dict[str, torch.Tensor]:
    """OBS saliency (structure.reconstruct) where every unit of a group is read by a measured
    Linear; the l2 norm of the producer weights for the other groups."""
    out = obs_scores(model, graph, stats, damp=damp)
    rest = [g for g in graph.groups if g.name not in out]
    if rest:
        out.update(_norm_scores(model, DependencyGraph(rest, graph.producer_dims), 2))
    return out


def _obs_scores(model, graph, *, data=None, batches=8, **_):
    return obs_importance(model, graph, consumer_stats(model, graph, data, batches))


def _random_scores(model, graph, *, seed: int = 0, **_):
    gen = torch.Generator().manual_seed(seed)
    return {g.name: torch.rand(len(g), generator=gen) for g in graph.groups}


IMPORTANCE: dict[str, Importance] = {
    "l1": lambda model, graph, **_: _norm_scores(model, graph, 1),
    "l2": lambda model, graph, **_: _norm_scores(model, graph, 2),
    "bn_scale": lambda model, graph, **_: _bn_scores(model, graph),
    "taylor": lambda model, graph, *, data=None, batches=8, loss=None, **_: _taylor_scores(model, graph, data,
                                                                                           batches, loss),
    "activation": lambda model, graph, *, data=None, batches=8, **_: _activation_scores(model, graph, data,
                                                                                         batches),
    "obs": _obs_scores,
    "random": _random_scores,
}


def register_importance(name: str, fn: Importance, *, replace: bool = False) -> None:
    """Add an importance criterion: `fn(model, graph, *, data, batches, seed, loss)` returns
    {group name: (len(group),) tensor}, higher = keep (take **kwargs for what it ignores)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise NetshrinkError(f"register_importance: name must be an identifier, not {name!r}")
    if not callable(fn):
        raise NetshrinkError(f"register_importance: {name!r} needs a callable")
    if name in IMPORTANCE and not replace:
        raise NetshrinkError(f"register_importance: {name!r} is already registered (pass replace=True)")
    IMPORTANCE[name] = fn


def importance_names() -> tuple[str, ...]:
    return tuple(IMPORTANCE)


def scores(model: nn.Module, graph: DependencyGraph, criterion: str, *, data=None, batches: int = 8,
           seed: int = 0, loss=None) -> dict[str, torch.Tensor]:
    """Importance of every component of every group (higher = keep). `loss`: what
    gradient criteria differentiate (a train.losses.BatchLoss, a loss name or a callable
    `loss(outputs, target)`; None: auto, from the targets).

    >>> s = scores(model, analyze(model, x), "l1")
    """
    fn = IMPORTANCE.get(criterion)
    if fn is None:
        raise NetshrinkError(f"unknown importance {criterion!r}; valid: {', '.join(IMPORTANCE)}")
    out = fn(model, graph, data=data, batches=batches, seed=seed, loss=loss)
    missing = [g.name for g in graph.groups if g.name not in out or len(out[g.name]) != len(g)]
    if missing:
        raise NetshrinkError(f"importance {criterion!r} gave no score of the right length for group {missing[0]!r}")
    return out
