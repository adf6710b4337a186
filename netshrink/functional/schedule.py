"""Sparsity schedules of gradual pruning (pure maths, no tensors).

Zhu & Gupta 2017, "To prune, or not to prune", eq. 1:

    s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt))**3     for t in {t0, t0 + dt, ..., t0 + n*dt}

Sparsity rises fast while many redundant weights remain and slowly near the end.
Masks change only every `dt` steps, so between updates the sparsity of the last
update holds.
"""
from __future__ import annotations

import math


def cubic_sparsity(step: int, *, initial: float, final: float, start: int, end: int, frequency: int) -> float:
    """Target sparsity after `step` optimiser steps.

    Before `start` nothing is pruned (0.0); at `start` the sparsity is `initial`;
    it follows the cubic to `final` at `end` (= t0 + n*dt) and stays there.
    `step` is rounded down to the last mask update (a multiple of `frequency`
    after `start`), so the value only changes at update steps.

    >>> cubic_sparsity(50, initial=0.0, final=0.9, start=0, end=100, frequency=10)
    0.7875
    """
    if step < start:
        return 0.0
    if step >= end or end <= start:
        return final
    at = start + ((step - start) // frequency) * frequency   # last mask update
    frac = (at - start) / (end - start)                       # (t - t0) / (n dt) in [0, 1)
    return final + (initial - final) * (1.0 - frac) ** 3


def is_update_step(step: int, *, start: int, end: int, frequency: int) -> bool:
    """Whether masks are recomputed after `step` steps: t0, t0 + dt, ..., and `end`."""
    if step < start or step > end:
        return False
    return (step - start) % frequency == 0 or step == end


def geometric_rounds(target: float, rate: float) -> int:
    """Rounds of pruning `rate` of the remaining weights needed to reach `target`
    sparsity: the smallest R with (1 - rate)**R <= 1 - target (at least 1)."""
    if target <= 0:
        return 1
    return max(1, math.ceil(math.log(1.0 - target) / math.log(1.0 - rate) - 1e-9))
