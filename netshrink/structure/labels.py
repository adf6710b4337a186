"""Channel labels: for each index of a tensor's channel dim, the unit it belongs to
(see graph.py for what a unit is). The bottom of the structure package."""
from __future__ import annotations

import torch


class _Pinned:
    def __repr__(self):
        return "PINNED"


PINNED = _Pinned()  # every unit of this tensor is pinned (model inputs, constants, opaque blocks' outputs)


class Label:
    """Units along dimension `dim` of a tensor (len(units) == tensor.shape[dim])."""

    __slots__ = ("units", "dim")

    def __init__(self, units: list[int], dim: int):
        self.units = units
        self.dim = dim


def holds_tensors(v) -> bool:
    """A tensor, or a (nested) tuple / list with one."""
    if isinstance(v, torch.Tensor):
        return True
    return isinstance(v, (tuple, list)) and any(holds_tensors(x) for x in v)


def has_label(lbl) -> bool:
    """Does this label (or tuple of labels) carry channels?"""
    return isinstance(lbl, Label) or (isinstance(lbl, tuple) and any(has_label(x) for x in lbl))
