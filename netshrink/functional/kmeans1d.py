"""1-D k-means for weight sharing (Han et al. 2016, Deep Compression).

Weights of one layer are clustered into k shared values. Deep Compression's finding is
that *linear* initialisation (centroids spaced evenly over [min, max]) beats random or
density-based initialisation, because it keeps a few centroids on the rare large weights
that matter most. In 1-D, Lloyd's assignment step is a `searchsorted` against the
midpoints between sorted centroids, so one iteration is O(n log k).

    >>> c, idx = kmeans1d(torch.tensor([0.1, 0.2, 0.9, 1.0]), k=2)
    >>> c.tolist(), idx.tolist()
    ([0.15..., 0.95...], [0, 0, 1, 1])
"""
from __future__ import annotations

import torch


def linear_init(values: torch.Tensor, *, k: int) -> torch.Tensor:
    """k centroids spaced evenly over [min, max] of `values` (n,) -> (k,) float64."""
    lo, hi = float(values.min()), float(values.max())
    return torch.linspace(lo, hi, k, dtype=torch.float64)


def assign(values: torch.Tensor, *, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid for each value: (n,), (k,) sorted -> (n,) int64.
    Ties (a value exactly on a midpoint) go to the lower centroid."""
    mid = (centroids[1:] + centroids[:-1]) / 2            # (k-1,) decision boundaries
    return torch.searchsorted(mid, values.to(mid.dtype), right=False)


def kmeans1d(values: torch.Tensor, *, k: int, iters: int = 100, tol: float = 1e-10,
             init: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's algorithm on a 1-D tensor.

    values: (n,) floats (for weight sharing: the non-zero weights of one layer).
    k: number of clusters; fewer are returned when `values` has fewer distinct values.
    init: (k,) initial centroids; default `linear_init` (Deep Compression).
    Returns (centroids (k',) float32 sorted ascending, assignment (n,) int64 into them).
    Empty clusters are dropped (their indices renumbered), so every centroid has members.
    """
    if values.numel() == 0:
        return torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    x = values.detach().reshape(-1).to(torch.float64)
    distinct = torch.unique(x)
    if distinct.numel() <= k:                             # nothing to cluster: exact
        return distinct.to(torch.float32), torch.searchsorted(distinct, x)
    c = (init.to(torch.float64) if init is not None else linear_init(x, k=k)).sort().values
    for _ in range(iters):
        idx = assign(x, centroids=c)
        sums = torch.zeros_like(c).index_add_(0, idx, x)
        counts = torch.zeros_like(c).index_add_(0, idx, torch.ones_like(x))
        # An empty cluster keeps its centroid this round (it may win members later).
        new = torch.where(counts > 0, sums / counts.clamp(min=1), c).sort().values
        shift = float((new - c).abs().max())
        c = new
        if shift <= tol:
            break
    idx = assign(x, centroids=c)
    used = torch.bincount(idx, minlength=c.numel()) > 0
    # Renumber so that only centroids with members remain: old index -> new index.
    remap = torch.cumsum(used.to(torch.int64), 0) - 1
    return c[used].to(torch.float32), remap[idx]
