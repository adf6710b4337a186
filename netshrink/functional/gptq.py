"""GPTQ (Frantar et al. 2023): quantize a layer's weight column by column, each time
spreading the rounding error over the not-yet-quantized columns through the inverse
Hessian (the OBS update), so that ||W X - W_hat X|| stays small.

    W: (rows, cols) = (out, in); H = 2 X^T X (cols, cols) from calibration inputs.
    U = upper Cholesky factor of (H + damp * mean(diag H) * I)^-1.
    for each column q (in act-order: decreasing diag H, if asked):
        w_hat_q = quant(w_q);  e = (w_q - w_hat_q) / U_qq
        W[:, q:] -= e U_{q, q:}                  (inside a block of `block_size` columns)
    and the block's accumulated errors update the columns after the block at once
    ("lazy batch updates": one (rows, B) @ (B, cols - end) product per block).

Scales: per output channel (computed once from the whole row, as the reference does) or per
group of `group_size` consecutive input columns (computed when the quantizer reaches a
group, from the already-updated weights). With act-order and groups, the groups stay the
contiguous column ranges of the original order and their scales are computed up front
("static groups"), so each group still lies on one grid that the codec stores compactly.

Weights that are exactly zero on entry (an earlier pruning step) stay zero: they are
"quantized" to 0 and their (zero) error is compensated like any other, so a
sparsegpt -> gptq recipe keeps its sparsity.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from netshrink.functional.hessian import inverse_cholesky, prepare_hessian
from netshrink.functional.quantize import calibrate, dequantize, qrange


@dataclass
class GPTQResult:
    weight: torch.Tensor       # (rows, cols) dequantized, every group exactly on k * scale
    scale: torch.Tensor        # (rows, n_groups)
    zero_point: torch.Tensor   # (rows, n_groups)
    loss: float                # sum over columns of (w - w_hat)^2 / U_qq^2 / 2 (the OBS error estimate)


def _qparams(w: torch.Tensor, *, bits: int, symmetric: bool, calibration: str):
    return calibrate(w, bits=bits, symmetric=symmetric, method=calibration)   # (rows, 1) each


def _quant(w: torch.Tensor, s: torch.Tensor, z: torch.Tensor, qmin: int, qmax: int) -> torch.Tensor:
    """(rows,) column -> dequantized (rows,): (clamp(round(w / s) + z) - z) * s."""
    codes = torch.clamp(torch.round(w / s) + z, qmin, qmax)
    return dequantize(codes, scale=s, zero_point=z)


@torch.no_grad()
def gptq_quantize(weight: torch.Tensor, hessian: torch.Tensor, *, bits: int, group_size: int = 0,
                  symmetric: bool = True, act_order: bool = False, damp: float = 0.01, block_size: int = 128,
                  calibration: str = "minmax") -> GPTQResult:
    """weight (rows, cols), hessian (cols, cols) -> GPTQResult. group_size 0: per output channel."""
    rows, cols = weight.shape
    if group_size and cols % group_size:
        raise ValueError(f"group_size {group_size} does not divide the {cols} input columns")
    zeros = weight == 0                                                  # kept exactly zero
    h, w = prepare_hessian(hessian, weight, damp=damp)
    qmin, qmax = qrange(bits, symmetric)
    n_groups = cols // group_size if group_size else 1
    scale = torch.zeros(rows, n_groups)
    zero = torch.zeros(rows, n_groups)
    if not group_size:
        s, z = _qparams(w, bits=bits, symmetric=symmetric, calibration=calibration)
        scale[:], zero[:] = s, z
    perm = torch.argsort(torch.diag(h), descending=True) if act_order else torch.arange(cols)
    static = bool(group_size) and act_order
    if static:   # scales of the original contiguous groups, before any update
        for g in range(n_groups):
            s, z = _qparams(w[:, g * group_size:(g + 1) * group_size], bits=bits, symmetric=symmetric,
                            calibration=calibration)
            scale[:, g], zero[:, g] = s[:, 0], z[:, 0]
    w, h, zeros = w[:, perm], h[perm][:, perm], zeros[:, perm]
    u = inverse_cholesky(h)                                              # (cols, cols) upper
    if group_size and not static:   # a group must start inside a block
        block_size = max(group_size, block_size // group_size * group_size)
    q = torch.zeros_like(w)
    loss = 0.0
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1, err1, u1 = w[:, i1:i2].clone(), torch.zeros(rows, i2 - i1), u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i
            if group_size and not static and col % group_size == 0:
                s, z = _qparams(w1[:, i:i + group_size], bits=bits, symmetric=symmetric, calibration=calibration)
                scale[:, col // group_size], zero[:, col // group_size] = s[:, 0], z[:, 0]
            g = int(perm[col]) // group_size if group_size else 0
            s, z = scale[:, g], zero[:, g]
            wc = w1[:, i]
            qc = torch.where(zeros[:, col], torch.zeros_like(wc), _quant(wc, s, z, qmin, qmax))
            q[:, col] = qc
            d = u1[i, i]
            e = (wc - qc) / d                                             # (rows,)
            loss += float((e ** 2).sum()) / 2
            w1[:, i:] -= e[:, None] * u1[i, i:][None, :]                  # (rows, 1) x (1, B - i)
            err1[:, i] = e
        w[:, i2:] -= err1 @ u[i1:i2, i2:]                                # lazy update: (rows, B) @ (B, rest)
    inv = torch.argsort(perm)
    return GPTQResult(weight=q[:, inv].contiguous(), scale=scale, zero_point=zero, loss=loss)


def rtn_quantize(weight: torch.Tensor, *, bits: int, group_size: int = 0, symmetric: bool = True,
                 calibration: str = "minmax") -> torch.Tensor:
    """Round-to-nearest with the same grids as `gptq_quantize` (the baseline it must beat)."""
    rows, cols = weight.shape
    g = group_size or cols
    r = weight.reshape(-1, g)
    s, z = calibrate(r, bits=bits, symmetric=symmetric, method=calibration)
    qmin, qmax = qrange(bits, symmetric)
    out = _quant(r, s, z, qmin, qmax)
    return torch.where(weight.reshape(-1, g) == 0, torch.zeros_like(out), out).reshape(rows, cols)
