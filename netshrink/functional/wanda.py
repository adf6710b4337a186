"""Wanda (Sun et al. 2024): prune by |W_ij| * ||X_j||_2, compared within each output
row, with no weight update.

    W: (rows, cols); x_norm: (cols,) the l2 norm of input channel j over all calibration
    tokens. Unstructured: each row loses its `sparsity` fraction of lowest scores;
    n:m: each group of m consecutive inputs of a row keeps its n highest scores.
"""
from __future__ import annotations

import torch

from netshrink.functional.prune import nm_mask


def wanda_scores(weight: torch.Tensor, x_norm: torch.Tensor) -> torch.Tensor:
    """(rows, cols) |W| * ||X_j|| (broadcast over rows)."""
    return weight.abs() * x_norm.reshape(1, -1)


@torch.no_grad()
def wanda_mask(weight: torch.Tensor, x_norm: torch.Tensor, *, sparsity: float = 0.5, n: int = 0,
               m: int = 0) -> torch.Tensor:
    """Boolean keep-mask (rows, cols)."""
    score = wanda_scores(weight, x_norm)
    if m:
        return nm_mask(score, n=n, m=m)
    rows, cols = score.shape
    k = int(cols * sparsity)                                  # removed per row
    keep = torch.ones_like(score, dtype=torch.bool)
    if k:
        idx = torch.argsort(score, dim=1, stable=True)[:, :k]
        keep.scatter_(1, idx, False)
    return keep
