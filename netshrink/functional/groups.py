"""How a weight tensor splits into groups of units (pure tensor maths).

Two directions, for every layer kind netshrink regularises:

- ``"out"``: the layer's *output units*, one group per unit = its incoming weights:
  a row of a Linear weight (out, in), a conv filter (out, in, kh, kw), or an LSTM/GRU
  hidden unit across its gates (rows h, H+h, 2H+h, ... of weight_ih / weight_hh,
  whose first dimension is gates x H).
- ``"in"``: the layer's *input features*, one group per feature = that feature's
  outgoing weights into this layer: a column of a Linear weight, an input channel of a
  conv (all its kernels), a column of an LSTM/GRU weight (all gates).

A neuron's outgoing weights are the ``"in"`` groups of the *next* layer, so group
lasso on "in" groups kills input features and hidden units alike (Scardapane et al.).

    >>> w = torch.randn(8, 3)                                  # LSTM-like: 2 gates x 4 units
    >>> group_norms(w, direction="out", gates=2).shape
    torch.Size([4])
"""
from __future__ import annotations

from typing import Literal

import torch

Direction = Literal["out", "in"]

# Gates stacked along dim 0 of recurrent weights (torch layout).
RNN_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def num_groups(shape: tuple[int, ...] | torch.Size, *, direction: Direction, gates: int = 1) -> int:
    """Number of units in `direction` for a weight of `shape`."""
    return shape[0] // gates if direction == "out" else shape[1]


def group_matrix(w: torch.Tensor, *, direction: Direction, gates: int = 1) -> torch.Tensor:
    """(G, group size) matrix whose row g holds the weights of unit g (a view or copy)."""
    if direction == "out":
        # (gates*U, rest...) -> (gates, U, rest) -> (U, gates, rest) -> (U, gates*rest)
        u = w.shape[0] // gates
        return w.reshape(gates, u, -1).transpose(0, 1).reshape(u, -1)
    # (out, in, k...) -> (in, out, k...) -> (in, out*k)
    return w.transpose(0, 1).reshape(w.shape[1], -1)


def expand(per_group: torch.Tensor, shape: tuple[int, ...] | torch.Size, *, direction: Direction,
           gates: int = 1) -> torch.Tensor:
    """Broadcast a (G,) tensor over a weight of `shape` (each unit's value on its group)."""
    rest = [1] * (len(shape) - 2)
    if direction == "out":
        return per_group.repeat(gates).reshape(shape[0], *([1] * (len(shape) - 1)))
    return per_group.reshape(1, shape[1], *rest)


def group_norms(w: torch.Tensor, *, direction: Direction, gates: int = 1) -> torch.Tensor:
    """(G,) Euclidean norm of each unit's group."""
    return group_matrix(w, direction=direction, gates=gates).norm(dim=1)


def group_size(shape: tuple[int, ...] | torch.Size, *, direction: Direction, gates: int = 1) -> int:
    """Weights per group, |g|."""
    n = 1
    for s in shape:
        n *= s
    return n // num_groups(shape, direction=direction, gates=gates)


def dead_groups(w: torch.Tensor, *, direction: Direction, gates: int = 1, tol: float = 0.0) -> torch.Tensor:
    """(G,) bool: units whose whole group is zero (norm <= tol)."""
    return group_norms(w.detach(), direction=direction, gates=gates) <= tol
