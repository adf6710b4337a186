"""Orthonormal DCT-II and its inverse (DCT-III) as matrices, applied along the last
one or two dimensions.

C[k, n] = a_k cos(pi (2n + 1) k / (2N)), a_0 = sqrt(1/N), a_k = sqrt(2/N): C is
orthogonal (C @ C.T = I), so the inverse is C.T and a round trip at full coefficients
is exact up to float rounding (computed in float64 here, ~1e-15 relative).

    coef = dct2(kernels)          # (..., h, w) -> (..., h, w)
    back = idct2(coef)            # == kernels up to ~1e-7 in float32
"""
from __future__ import annotations

import functools
import math

import torch


@functools.lru_cache(maxsize=64)
def _matrix64(n: int) -> torch.Tensor:
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    c = torch.cos(math.pi * (2 * i + 1) * k / (2 * n))
    c[0] *= math.sqrt(1.0 / n)
    c[1:] *= math.sqrt(2.0 / n)
    return c


def dct_matrix(n: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n, n) orthonormal DCT-II matrix C; y = C @ x is the DCT of x: (n,)."""
    return _matrix64(n).to(dtype)


def dct2(x: torch.Tensor) -> torch.Tensor:
    """2-D DCT-II over the last two dims: (..., h, w) -> (..., h, w); C_h X C_w^T."""
    ch, cw = dct_matrix(x.shape[-2], dtype=x.dtype), dct_matrix(x.shape[-1], dtype=x.dtype)
    return ch @ x @ cw.T


def idct2(c: torch.Tensor) -> torch.Tensor:
    """Inverse of `dct2`: (..., h, w) -> (..., h, w); C_h^T Y C_w."""
    ch, cw = dct_matrix(c.shape[-2], dtype=c.dtype), dct_matrix(c.shape[-1], dtype=c.dtype)
    return ch.T @ c @ cw


def to_blocks(w: torch.Tensor, *, block: int) -> torch.Tensor:
    """(rows, cols) -> (nb_r, nb_c, block, block), zero-padded to whole blocks."""
    r, c = w.shape
    pr, pc = -r % block, -c % block
    w = torch.nn.functional.pad(w, (0, pc, 0, pr))
    nr, nc = w.shape[0] // block, w.shape[1] // block
    return w.reshape(nr, block, nc, block).permute(0, 2, 1, 3)


def from_blocks(b: torch.Tensor, *, rows: int, cols: int) -> torch.Tensor:
    """Inverse of `to_blocks`: (nb_r, nb_c, block, block) -> (rows, cols)."""
    nr, nc, bs, _ = b.shape
    return b.permute(0, 2, 1, 3).reshape(nr * bs, nc * bs)[:rows, :cols]
