"""Which components to remove for a target: a fraction of units, of FLOPs, or of
measured latency; per layer (the same fraction of every group) or global (one
ranking across groups, each group's scores divided by their mean so layers of
different widths and fan-ins compare, as Torch-Pruning's default "mean" normaliser).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from netshrink.structure.graph import DependencyGraph
from netshrink.structure.shrink import remove_components


def _cap(g, max_ratio: float) -> int:
    return max(0, min(len(g) - g.min_keep, int(max_ratio * len(g))))


def plan(graph: DependencyGraph, scores: dict[str, torch.Tensor], amount: float, *, scope: str = "global",
         max_ratio: float = 0.9, round_to: int = 1) -> dict[str, list[int]]:
    """Remove `amount` (a fraction in [0, 1)) of all prunable components, lowest scores first.
    round_to: every group keeps a multiple of this many units (CPU kernels of torch and
    ONNX Runtime run much faster on channel counts that are multiples of 8 / 16).

    >>> p = plan(graph, scores(model, graph, "l1"), 0.5, scope="layer")
    >>> remove_components(model, graph, p)
    """
    out = _plan(graph, scores, amount, scope=scope, max_ratio=max_ratio)
    if round_to <= 1:
        return out
    rounded = {}
    for g in graph.groups:
        if len(g) % round_to:  # a group that is not a multiple itself stays as planned
            if out.get(g.name):
                rounded[g.name] = out[g.name]
            continue
        kept = len(g) - len(out.get(g.name, []))
        kept = max(round_to, int(round(kept / round_to)) * round_to)
        k = len(g) - kept
        if k > 0:
            rounded[g.name] = torch.argsort(scores[g.name], stable=True)[:k].tolist()
    return rounded


def _plan(graph, scores, amount, *, scope, max_ratio):
    if scope == "layer":
        out = {}
        for g in graph.groups:
            k = min(_cap(g, max_ratio), int(round(amount * len(g))))
            if k:
                out[g.name] = torch.argsort(scores[g.name], stable=True)[:k].tolist()
        return out
    entries = []  # (normalised score, group, index)
    for g in graph.groups:
        s = scores[g.name].double()
        s = s / s.mean().clamp_min(1e-12)
        entries += [(float(v), g.name, i) for i, v in enumerate(s)]
    entries.sort(key=lambda e: e[0])
    total = sum(len(g) for g in graph.groups)
    want = int(round(amount * total))
    caps = {g.name: _cap(g, max_ratio) for g in graph.groups}
    out: dict[str, list[int]] = {}
    for _, name, i in entries:
        if want <= 0:
            break
        if len(out.get(name, [])) < caps[name]:
            out.setdefault(name, []).append(i)
            want -= 1
    return out


def shrunk_copy(model: nn.Module, graph: DependencyGraph, p: dict[str, list[int]]) -> nn.Module:
    m = copy.deepcopy(model)
    remove_components(m, graph, p)
    return m


def search(model: nn.Module, graph: DependencyGraph, scores: dict, cost: Callable[[nn.Module], float],
           budget: float, *, scope: str, max_ratio: float, iters: int = 12, round_to: int = 1) -> tuple[dict, float]:
    """The smallest amount whose shrunk model has cost <= budget (bisection; cost is
    FLOPs or latency of a shrunk copy). Returns (plan, its cost).

    >>> p, flops = search(model, graph, s, lambda m: count_flops(m, x)[0], 0.5 * flops0,
    ...                   scope="global", max_ratio=0.9)
    """
    lo, hi = 0.0, max_ratio
    best = plan(graph, scores, hi, scope=scope, max_ratio=max_ratio, round_to=round_to)
    best_cost = cost(shrunk_copy(model, graph, best))
    if best_cost > budget:  # even the most we may remove is not enough: report it, do that
        return best, best_cost
    for _ in range(iters):
        mid = (lo + hi) / 2
        p = plan(graph, scores, mid, scope=scope, max_ratio=max_ratio, round_to=round_to)
        c = cost(shrunk_copy(model, graph, p))
        if c <= budget:
            hi, best, best_cost = mid, p, c
        else:
            lo = mid
    return best, best_cost
