"""How much each component (channel / neuron / hidden unit / head) matters.

Every criterion returns {group name: (n_components,) tensor}, higher = keep.
- l1 / l2: norm of the producer weights of the unit (Li et al. 2017 "Pruning filters";
  for a residual stream, summed over every convolution writing that channel).
- bn_scale: |gamma| of the BatchNorm after it (network slimming, Liu et al. 2017);
  a group with no BatchNorm falls back to the l2 norm.
- taylor: first-order Taylor (Molchanov et al. 2019): per batch (sum_s g_s w_s)^2 over
  the unit's parameters s (producer rows, biases, BatchNorm scale/shift), summed over
  batches: the squared change of the loss if the unit were removed.
- activation: mean |output| of the unit on data (what the unit actually emits; for an
  attention head, of its value projection, as for BERT's value layer).
- random: the baseline.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from netshrink.errors import NetshrinkError
from netshrink.structure.blocks import MHA_TYPES
from netshrink.structure.graph import DependencyGraph

CRITERIA = ("l1", "l2", "taylor", "bn_scale", "activation", "random")


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


def _batches(data, n: int, batch_size: int = 64, seed: int = 0):
    if data is None:
        raise NetshrinkError("structure: this importance criterion needs data (taylor, activation)")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(data), generator=g)
    for b in range(n):
        sel = idx[b * batch_size:(b + 1) * batch_size]
        if len(sel) == 0:
            return
        xs, ys = zip(*(data[int(i)] for i in sel))
        yield torch.stack(xs), torch.as_tensor(ys)


def _taylor_scores(model, graph, data, batches):
    acc = {g.name: torch.zeros(len(g)) for g in graph.groups}
    was = model.training
    model.eval()  # BatchNorm statistics stay as trained
    for x, y in _batches(data, batches):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for g in graph.groups:
                for k, c in enumerate(g.components):
                    s = 0.0
                    for m, n, d, i in _weight_slots(c, ("out", "norm"), None):
                        p = _param(model, m, n)
                        if isinstance(p, nn.Parameter) and p.grad is not None:
                            s += float((p.grad.select(d, i) * p.detach().select(d, i)).sum())
                    acc[g.name][k] += s * s
    model.zero_grad(set_to_none=True)
    model.train(was)
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
            for x, _ in _batches(data, batches):
                model(x)
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


def scores(model: nn.Module, graph: DependencyGraph, criterion: str, *, data=None, batches: int = 8,
           seed: int = 0) -> dict[str, torch.Tensor]:
    """Importance of every component of every group (higher = keep).

    >>> s = scores(model, analyze(model, x), "l1")
    """
    if criterion == "l1":
        return _norm_scores(model, graph, 1)
    if criterion == "l2":
        return _norm_scores(model, graph, 2)
    if criterion == "bn_scale":
        return _bn_scores(model, graph)
    if criterion == "taylor":
        return _taylor_scores(model, graph, data, batches)
    if criterion == "activation":
        return _activation_scores(model, graph, data, batches)
    if criterion == "random":
        gen = torch.Generator().manual_seed(seed)
        return {g.name: torch.rand(len(g), generator=gen) for g in graph.groups}
    raise NetshrinkError(f"unknown importance {criterion!r}; valid: {', '.join(CRITERIA)}")
