"""Pure maths of low-rank factorisation (Denton et al. 2014; Jaderberg et al. 2014).

A Linear weight W (out, in) ≈ A B with A (out, r), B (r, in): the layer becomes two
smaller layers costing r·(out + in) instead of out·in. By Eckart–Young the truncated
SVD is the best rank-r approximation in Frobenius norm, and its squared error is the
energy of the discarded singular values, Σ_{i>r} σ_i².

Data-aware factors minimise the error of the layer's *outputs* on calibration inputs
X (in, N) instead: ‖(W − A B) X‖_F² = ‖(W − A B) L‖_F² where C = X Xᵀ / N = L Lᵀ
(Cholesky). So take the truncated SVD of W L = U Σ Vᵀ and undo the whitening:
A = U_r Σ_r^{½}, B = Σ_r^{½} V_rᵀ L⁻¹ — the optimum of the output error at rank r.

Conv kernels W (O, I, kh, kw) use Tucker-2 (Kim et al. 2016; HOSVD over the two
channel modes): W ≈ core ×₀ U_out ×₁ U_in, i.e. a 1×1 conv I → r_in, a kh×kw conv
r_in → r_out, and a 1×1 conv r_out → O.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

# svd_fn(matrix, rank) -> (U (m, r), S (r,), Vh (r, n)); the full SVD by default, or a
# randomised one (functional.sketch) for large layers.
SvdFn = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def full_svd(a: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The exact SVD truncated to `rank`: U (m, r), S (r,), Vh (r, n)."""
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    return u[:, :rank], s[:rank], vh[:rank]


def split_factors(u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A = U Σ^{½} (m, r), B = Σ^{½} Vh (r, n): the singular values split evenly, so
    both factors have the same scale when they are fine-tuned."""
    root = s.clamp_min(0).sqrt()
    return u * root, root[:, None] * vh


def truncated_svd(w: torch.Tensor, *, rank: int, svd_fn: SvdFn = full_svd) -> tuple[torch.Tensor, torch.Tensor]:
    """The best rank-`rank` factors of W (m, n): A (m, r), B (r, n), W ≈ A @ B.

    >>> a, b = truncated_svd(layer.weight, rank=16)
    """
    u, s, vh = svd_fn(w, rank)
    return split_factors(u, s, vh)


def truncation_error(s: torch.Tensor, *, rank: int) -> torch.Tensor:
    """‖W − W_r‖_F = sqrt(Σ_{i>r} σ_i²) (Eckart–Young), from all singular values s."""
    return s[rank:].pow(2).sum().sqrt()


def max_useful_rank(shape: tuple[int, int]) -> int:
    """The largest rank whose factors are smaller than the dense (m, n) matrix:
    r·(m + n) < m·n."""
    m, n = shape
    return max(0, (m * n - 1) // (m + n))


def rank_for_energy(s: torch.Tensor, *, energy: float) -> int:
    """The smallest r keeping at least `energy` of Σ σ_i² (the squared Frobenius norm)."""
    e = s.double().pow(2)
    kept = torch.cumsum(e, 0) / e.sum().clamp_min(1e-300)
    return int(min(len(s), int((kept < energy - 1e-12).sum()) + 1))


def rank_for_ratio(shape: tuple[int, int], *, ratio: float) -> int:
    """The largest r (at least 1) whose factors hold at most `ratio` of the m·n weights:
    r·(m + n) ≤ ratio·m·n."""
    m, n = shape
    return max(1, min(min(m, n), int(math.floor(ratio * m * n / (m + n) + 1e-9))))


def allocate_ranks(spectra: list[torch.Tensor], shapes: list[tuple[int, int]], *, ratio: float) -> list[int]:
    """Ranks for several layers under one global budget: Σ r_l·(m_l + n_l) ≤ ratio·Σ m_l·n_l.

    Greedy over singular values by relative energy gained per parameter spent,
    σ_i² / ‖W_l‖_F² / (m_l + n_l); optimal for this separable objective because each
    layer's gains decrease with i. Every layer keeps rank ≥ 1, and no layer goes past
    the rank at which its factors would outgrow it.
    """
    budget = ratio * sum(m * n for m, n in shapes)
    ranks = [1] * len(shapes)
    spent = sum(m + n for m, n in shapes)
    cands = []  # (gain per parameter, layer, index)
    for l, (s, (m, n)) in enumerate(zip(spectra, shapes)):
        e = s.double().pow(2)
        e = e / e.sum().clamp_min(1e-300)
        for i in range(1, min(len(s), max(1, max_useful_rank((m, n))))):
            cands.append((float(e[i]) / (m + n), l, i))
    cands.sort(key=lambda c: -c[0])
    for _, l, i in cands:
        m, n = shapes[l]
        if i != ranks[l]:  # gains within a layer come in order; keep them a prefix
            continue
        if spent + m + n > budget:
            continue
        ranks[l] += 1
        spent += m + n
    return ranks


# -- data-aware (whitened) factors --------------------------------------------------

def input_moment(x: torch.Tensor) -> torch.Tensor:
    """C = Xᵀ X / N for inputs x (N, in): the uncentred second moment, (in, in). Not the
    covariance: the error of W x includes the inputs' mean."""
    x = x.reshape(-1, x.shape[-1]).double()
    return x.T @ x / x.shape[0]


def whitening(cov: torch.Tensor, *, damp: float = 0.01) -> torch.Tensor:
    """The Cholesky factor L (in, in), lower, of C + damp·mean(diag C)·I.

    Damping keeps L invertible when some inputs never vary (e.g. MNIST's border pixels
    are always 0): those directions then count as if they had a small variance."""
    c = cov.double()
    d = damp * float(torch.diagonal(c).mean()) + 1e-12
    return torch.linalg.cholesky(c + d * torch.eye(c.shape[0], dtype=c.dtype))


def whitened_spectrum(w: torch.Tensor, chol: torch.Tensor) -> torch.Tensor:
    """Singular values of W L: their energy is the output energy on the calibration data."""
    return torch.linalg.svdvals(w.double() @ chol)


def whitened_factors(w: torch.Tensor, chol: torch.Tensor, *, rank: int,
                     svd_fn: SvdFn = full_svd) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors A (m, r), B (r, n) minimising ‖(W − A B) L‖_F, i.e. the output error on
    the inputs whose second moment is L Lᵀ.

    >>> a, b = whitened_factors(w, whitening(input_moment(x)), rank=16)
    """
    wl = w.double() @ chol                                     # (m, n)
    u, s, vh = svd_fn(wl, rank)                                # (m, r), (r,), (r, n)
    a, b_white = split_factors(u, s, vh)
    # B = B_white L⁻¹  <=>  Lᵀ Bᵀ = B_whiteᵀ (an upper-triangular solve)
    b = torch.linalg.solve_triangular(chol.T, b_white.T, upper=True).T
    return a.to(w.dtype), b.to(w.dtype)


# -- Tucker-2 for conv kernels ------------------------------------------------------

def unfold(w: torch.Tensor, mode: int) -> torch.Tensor:
    """Mode-`mode` unfolding of a kernel (O, I, kh, kw): (dim_mode, rest)."""
    return w.movedim(mode, 0).reshape(w.shape[mode], -1)


def tucker2_ranks_for_ratio(shape: tuple[int, ...], *, ratio: float) -> tuple[int, int]:
    """(r_out, r_in) in proportion to (O, I), largest with I·r_in + r_in·r_out·k + r_out·O
    ≤ ratio·O·I·k, where k = kh·kw (at least 1 each)."""
    o, i = shape[0], shape[1]
    k = math.prod(shape[2:])
    best = (1, 1)
    for r_out in range(1, o + 1):
        r_in = max(1, min(i, round(r_out * i / o)))
        if i * r_in + r_in * r_out * k + r_out * o <= ratio * o * i * k:
            best = (r_out, r_in)
    return best


def tucker2(w: torch.Tensor, *, ranks: tuple[int, int], iters: int = 0, svd_fn: SvdFn = full_svd
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tucker-2 of a conv kernel W (O, I, k..) (1-D or 2-D) over its channel modes.

    Returns (u_out (O, r_out), core (r_out, r_in, kh, kw), u_in (I, r_in)) with
    W ≈ Σ core[a, b] · u_out[:, a] ⊗ u_in[:, b]. HOSVD initialisation (leading left
    singular vectors of each unfolding), then `iters` rounds of HOOI (alternating
    least squares), each of which can only lower the error.

    >>> u_out, core, u_in = tucker2(conv.weight, ranks=(16, 8))
    """
    r_out, r_in = ranks
    u_out = svd_fn(unfold(w, 0), r_out)[0]                           # (O, r_out)
    u_in = svd_fn(unfold(w, 1), r_in)[0]                             # (I, r_in)
    for _ in range(iters):
        # Fix u_in, best u_out: leading vectors of the unfolding of W ×₁ u_inᵀ.
        t = torch.einsum("oi...,ib->ob...", w, u_in)                 # (O, r_in, k..)
        u_out = svd_fn(unfold(t, 0), r_out)[0]
        t = torch.einsum("oi...,oa->ai...", w, u_out)                # (r_out, I, k..)
        u_in = svd_fn(unfold(t, 1), r_in)[0]
    core = torch.einsum("oi...,oa,ib->ab...", w, u_out, u_in)        # (r_out, r_in, k..)
    return u_out, core, u_in


def tucker2_compose(u_out: torch.Tensor, core: torch.Tensor, u_in: torch.Tensor) -> torch.Tensor:
    """The kernel (O, I, kh, kw) that Tucker-2 factors represent."""
    return torch.einsum("ab...,oa,ib->oi...", core, u_out, u_in)
