"""Randomised SVD by a sketched range finder (Halko, Martinsson, Tropp 2011).

A (m, n) of numerical rank ≈ k: draw a test matrix Ω (n, l), l = k + oversample,
take Y = A Ω (m, l), orthonormalise Q = qr(Y), optionally sharpen with q power
iterations (Algorithm 4.4, re-orthonormalising after every product so that small
singular directions are not lost to rounding), then B = Qᵀ A (l, n) is small and its
exact SVD B = Ũ Σ Vᵀ gives A ≈ (Q Ũ) Σ Vᵀ (Algorithm 5.1). Cost O(mnl) instead of
the O(mn·min(m, n)) of a full SVD.

Sketches (the test matrix Ω):
- "gaussian": i.i.d. N(0, 1) entries; A Ω is one dense matmul.
- "countsketch" (Clarkson & Woodruff 2013): each column j of A is added, with a
  random sign s(j), to one random bucket h(j) of l; A Ω costs one pass over A (nnz(A)
  additions) and no multiplications.
"""
from __future__ import annotations

from typing import Literal

import torch

SketchKind = Literal["gaussian", "countsketch"]


def gaussian_sketch(a: torch.Tensor, *, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A Ω with Ω (n, size) i.i.d. standard normal: (m, n) -> (m, size)."""
    omega = torch.randn(a.shape[1], size, generator=generator, dtype=a.dtype)
    return a @ omega


def countsketch(a: torch.Tensor, *, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A S with S (n, size) a CountSketch: one ±1 per row of S. (m, n) -> (m, size).

    Equivalent to `a @ S` with S[j, h(j)] = s(j), computed as a signed scatter-add of
    the columns of A into `size` buckets.
    """
    n = a.shape[1]
    buckets = torch.randint(0, size, (n,), generator=generator)                  # h: (n,)
    signs = torch.randint(0, 2, (n,), generator=generator).to(a.dtype) * 2 - 1   # s: (n,)
    out = torch.zeros(a.shape[0], size, dtype=a.dtype)
    return out.index_add_(1, buckets, a * signs)                                  # (m, size)


def countsketch_matrix(n: int, size: int, *, generator: torch.Generator | None = None,
                       dtype=torch.float32) -> torch.Tensor:
    """The dense (n, size) matrix S that `countsketch` applies with the same generator
    state (for tests and for explaining the sketch)."""
    buckets = torch.randint(0, size, (n,), generator=generator)
    signs = torch.randint(0, 2, (n,), generator=generator).to(dtype) * 2 - 1
    s = torch.zeros(n, size, dtype=dtype)
    s[torch.arange(n), buckets] = signs
    return s


def range_finder(a: torch.Tensor, *, size: int, power_iters: int = 2, sketch: SketchKind = "gaussian",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """An orthonormal Q (m, size) whose range approximates the range of A (m, n)
    (Halko et al. Algorithm 4.4, randomised subspace iteration)."""
    if sketch == "gaussian":
        y = gaussian_sketch(a, size=size, generator=generator)
    elif sketch == "countsketch":
        y = countsketch(a, size=size, generator=generator)
    else:
        raise ValueError(f"unknown sketch {sketch!r}; valid: gaussian, countsketch")
    q = torch.linalg.qr(y).Q                         # (m, size)
    for _ in range(power_iters):
        z = torch.linalg.qr(a.T @ q).Q               # (n, size)
        q = torch.linalg.qr(a @ z).Q                 # (m, size)
    return q


def randomized_svd(a: torch.Tensor, *, rank: int, oversample: int = 10, power_iters: int = 2,
                   sketch: SketchKind = "gaussian", generator: torch.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The top-`rank` SVD of A (m, n) by a sketched range finder.

    Returns U (m, rank), S (rank,), Vh (rank, n) with A ≈ U diag(S) Vh.

    >>> u, s, vh = randomized_svd(w, rank=64, generator=torch.Generator().manual_seed(0))
    """
    m, n = a.shape
    if not 1 <= rank <= min(m, n):
        raise ValueError(f"rank {rank} must be in [1, {min(m, n)}]")
    size = min(rank + oversample, m, n)
    q = range_finder(a, size=size, power_iters=power_iters, sketch=sketch, generator=generator)  # (m, l)
    b = q.T @ a                                                   # (l, n): small
    ub, s, vh = torch.linalg.svd(b, full_matrices=False)          # (l, l), (l,), (l, n)
    u = q @ ub                                                    # (m, l)
    return u[:, :rank], s[:rank], vh[:rank]
