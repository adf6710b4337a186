"""Allocation: one choice per layer, least total damage, total cost within a budget.

This is the multiple-choice knapsack (HAWQ-V3 solves the same problem as an ILP):
    minimise sum_l d[l][c_l]  subject to  sum_l w[l][c_l] <= W,  one c_l per layer.
`knapsack` solves it exactly by dynamic programming over the cost axis, after
rounding every cost *up* to a quantum of W / resolution (so a solution found is
always feasible in real bytes; with integer costs and resolution >= W it is exact).
Dominated options (costlier and no less damaging than another) are dropped first.

`uniform` is the baseline the search must beat: the same choice index for every layer.
"""
from __future__ import annotations

import math

import numpy as np

from netshrink.errors import NetshrinkError


def _undominated(costs: list[float], damage: list[float]) -> list[int]:
    """Indices of the options on the layer's own lower-left frontier."""
    order = sorted(range(len(costs)), key=lambda i: (costs[i], damage[i]))
    keep, best = [], math.inf
    for i in order:
        if damage[i] < best:
            keep.append(i)
            best = damage[i]
    return keep


def knapsack(costs: list[list[float]], damage: list[list[float]], capacity: float, *,
             resolution: int = 4000) -> list[int] | None:
    """The choice index per layer minimising total damage with total cost <= capacity;
    None when even the cheapest choices do not fit.

    >>> knapsack([[1, 2], [1, 3]], [[5, 1], [4, 0]], capacity=4)
    [1, 0]
    """
    if len(costs) != len(damage) or any(len(c) != len(d) or not c for c, d in zip(costs, damage)):
        raise NetshrinkError("knapsack: every layer needs as many costs as damages, and at least one option")
    if capacity < 0 or sum(min(c) for c in costs) > capacity:
        return None
    unit = max(capacity / resolution, 1e-12)
    cap = int(math.floor(capacity / unit + 1e-9))
    inf = math.inf
    best = np.full(cap + 1, inf)
    best[0] = 0.0                   # best[j]: least damage with total rounded cost exactly j
    picks = []
    for c, d in zip(costs, damage):
        opts = _undominated(c, d)
        units = [int(math.ceil(c[i] / unit - 1e-9)) for i in opts]
        new = np.full(cap + 1, inf)
        arg = np.full(cap + 1, -1, dtype=np.int64)
        for i, u in zip(opts, units):
            if u > cap:
                continue
            cand = np.full(cap + 1, inf)
            cand[u:] = best[: cap + 1 - u] + d[i]
            better = cand < new
            new[better] = cand[better]
            arg[better] = i
        best = new
        picks.append((arg, {i: u for i, u in zip(opts, units)}))
    j = int(np.argmin(best))
    if not np.isfinite(best[j]):
        return None
    out = []
    for arg, units in reversed(picks):   # walk back from the last layer
        i = int(arg[j])
        out.append(i)
        j -= units[i]
    return out[::-1]


def uniform(costs: list[list[float]], damage: list[list[float]], capacity: float,
            options: list[list[int]] | None = None) -> list[int] | None:
    """The least damaging of the uniform allocations that fits. options: the allocations
    that count as uniform (per-layer index vectors); default the same index everywhere."""
    if options is None:
        options = [[i] * len(costs) for i in range(min(len(c) for c in costs))]
    fits = [(total(damage, o), k) for k, o in enumerate(options) if total(costs, o) <= capacity]
    if not fits:
        return None
    return list(options[min(fits)[1]])


def total(values: list[list[float]], picks: list[int]) -> float:
    return float(sum(v[i] for v, i in zip(values, picks)))
