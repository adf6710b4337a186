"""Uniform quantization, binarisation and ternarisation: pure tensor maths.

Uniform affine quantization of a row of weights r with b bits:
    q = clamp(round(r / s) + z, qmin, qmax),   r_hat = (q - z) * s
symmetric: z = 0, q in [-(2^(b-1) - 1), 2^(b-1) - 1] (a restricted range, so the grid is
symmetric about an exactly representable 0); affine: q in [0, 2^b - 1], z an integer.
Every range includes 0, so pruned zeros stay exactly zero after quantization.

Granularity says which weights share (s, z): the whole tensor, each output channel
(row 0 of the weight), or groups of `group_size` consecutive weights of one output
channel. All functions work on "rows": the weight reshaped to (G, m), one (s, z) per row.

The dequantized value is computed as (q - z) * s with one s per row, so a row holds at
most 2^b distinct floats: a per-tensor quantized weight has <= 2^b distinct values and the
codec stores it as a codebook + packed indices.

    >>> rows = to_rows(w, granularity="channel")            # (out, in*kh*kw)
    >>> s, z = calibrate(rows, bits=4, symmetric=True, method="minmax")
    >>> w_hat = from_rows(dequantize(quantize_codes(rows, scale=s, zero_point=z, bits=4, symmetric=True),
    ...                              scale=s, zero_point=z), w.shape)
"""
from __future__ import annotations

import torch

EPS = 1e-12


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """(qmin, qmax) of the integer grid."""
    if symmetric:
        m = 2 ** (bits - 1) - 1
        return -m, m
    return 0, 2 ** bits - 1


def to_rows(w: torch.Tensor, *, granularity: str, group_size: int = 64) -> torch.Tensor:
    """(out, ...) -> (G, m): 'tensor' (1, n), 'channel' (out, n/out), 'group' (n/g, g).
    For 'group' the per-channel length must be divisible by group_size."""
    if granularity == "tensor" or w.dim() < 2:
        return w.reshape(1, -1)
    rows = w.reshape(w.shape[0], -1)
    if granularity == "channel":
        return rows
    if rows.shape[1] % group_size:
        raise ValueError(f"group_size {group_size} does not divide the {rows.shape[1]} weights per channel")
    return rows.reshape(-1, group_size)


def from_rows(rows: torch.Tensor, shape) -> torch.Tensor:
    return rows.reshape(shape)


def _qparams(lo: torch.Tensor, hi: torch.Tensor, *, bits: int, symmetric: bool):
    """Scale and zero point from a clipping range [lo, hi] per row (G, 1)."""
    qmin, qmax = qrange(bits, symmetric)
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)           # the grid must contain 0
    if symmetric:
        amax = torch.maximum(-lo, hi)
        scale = (amax / qmax).clamp(min=EPS)
        return scale, torch.zeros_like(scale)
    scale = ((hi - lo) / (qmax - qmin)).clamp(min=EPS)
    zero = (qmin - torch.round(lo / scale)).clamp(qmin, qmax)
    return scale, zero


def quantize_codes(rows: torch.Tensor, *, scale: torch.Tensor, zero_point: torch.Tensor, bits: int,
                   symmetric: bool) -> torch.Tensor:
    """(G, m) floats -> (G, m) integer codes (as float tensor) in [qmin, qmax]."""
    qmin, qmax = qrange(bits, symmetric)
    return torch.clamp(torch.round(rows / scale) + zero_point, qmin, qmax)


def dequantize(codes: torch.Tensor, *, scale: torch.Tensor, zero_point: torch.Tensor) -> torch.Tensor:
    return (codes - zero_point) * scale


def calibrate(rows: torch.Tensor, *, bits: int, symmetric: bool, method: str = "minmax",
              percentile: float = 99.9, grid: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and zero point (each (G, 1)) of every row of `rows` (G, m).

    minmax: the full range; percentile: clip at the `percentile`-th percentile of |r|
    (symmetric) or at the (100-p, p) percentiles (affine); mse: the clipping ratio in
    (0, 1] of the min-max range (a `grid`-point search) with the least squared error, per row.
    """
    r = rows.detach().float()
    if method == "percentile":
        p = percentile / 100.0
        if symmetric:
            hi = torch.quantile(r.abs(), p, dim=1, keepdim=True)
            return _qparams(-hi, hi, bits=bits, symmetric=True)
        lo = torch.quantile(r, 1 - p, dim=1, keepdim=True)
        hi = torch.quantile(r, p, dim=1, keepdim=True)
        return _qparams(lo, hi, bits=bits, symmetric=False)
    lo, hi = r.min(dim=1, keepdim=True).values, r.max(dim=1, keepdim=True).values
    if method == "minmax":
        return _qparams(lo, hi, bits=bits, symmetric=symmetric)
    if method != "mse":
        raise ValueError(f"unknown calibration {method!r}")
    best_err = torch.full_like(lo, float("inf"))
    best_s, best_z = _qparams(lo, hi, bits=bits, symmetric=symmetric)
    for ratio in torch.linspace(1.0 / grid, 1.0, grid).tolist():   # shrink the range towards 0
        s, z = _qparams(lo * ratio, hi * ratio, bits=bits, symmetric=symmetric)
        err = ((dequantize(quantize_codes(r, scale=s, zero_point=z, bits=bits, symmetric=symmetric),
                           scale=s, zero_point=z) - r) ** 2).sum(dim=1, keepdim=True)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_s, best_z = torch.where(better, s, best_s), torch.where(better, z, best_z)
    return best_s, best_z


def quantize_weight(w: torch.Tensor, *, bits: int, symmetric: bool = True, granularity: str = "channel",
                    group_size: int = 64, method: str = "minmax", percentile: float = 99.9,
                    scale: torch.Tensor | None = None, zero_point: torch.Tensor | None = None):
    """Quantize-dequantize `w` (any shape). Returns (w_hat same shape, in_range mask, scale, zp),
    where in_range marks weights inside the clipping range (where the STE passes gradients).
    Pass `scale`/`zero_point` (G, 1) to reuse a calibration."""
    rows = to_rows(w, granularity=granularity, group_size=group_size)
    if scale is None:
        scale, zero_point = calibrate(rows, bits=bits, symmetric=symmetric, method=method, percentile=percentile)
    raw = torch.round(rows / scale) + zero_point
    qmin, qmax = qrange(bits, symmetric)
    codes = raw.clamp(qmin, qmax)
    w_hat = dequantize(codes, scale=scale, zero_point=zero_point)
    return from_rows(w_hat, w.shape), from_rows((raw >= qmin) & (raw <= qmax), w.shape), scale, zero_point


def channel_mean_abs(w: torch.Tensor, scaling: str) -> torch.Tensor:
    """alpha broadcastable to w: mean |w| per output channel ('channel', XNOR-Net / BWN),
    of the whole tensor ('layer'), or 1 ('none', BinaryConnect)."""
    if scaling == "none":
        return torch.ones((), dtype=w.dtype)
    if scaling == "layer" or w.dim() < 2:
        return w.abs().mean()
    return w.abs().reshape(w.shape[0], -1).mean(dim=1).reshape(-1, *([1] * (w.dim() - 1)))


def binarize(w: torch.Tensor, *, scaling: str = "channel") -> torch.Tensor:
    """alpha * sign(w), with sign(0) = +1 (BinaryConnect's deterministic binarisation).
    alpha * (+-1) is exact, so each channel holds exactly two values {-alpha, +alpha}."""
    sign = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
    return channel_mean_abs(w, scaling) * sign


def ternarize(w: torch.Tensor, *, delta_factor: float = 0.7) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ternary weight networks (Li & Liu 2016), per tensor:
    delta = delta_factor * mean|W|, alpha = mean of |w| over |w| > delta,
    w_t = alpha * sign(w) * [|w| > delta]  -> values in {-alpha, 0, +alpha} exactly.
    Returns (w_t, delta, alpha)."""
    a = w.abs()
    delta = delta_factor * a.mean()
    keep = a > delta
    alpha = a[keep].mean() if bool(keep.any()) else torch.zeros((), dtype=w.dtype)
    return alpha * torch.sign(w) * keep.to(w.dtype), delta, alpha


def dynamic_activation_qparams(x: torch.Tensor, *, bits: int = 8, reduce_range: bool = True):
    """Per-tensor affine (scale, zero point) of one activation batch, as torch's dynamic
    int8 kernels choose them (range widened to include 0; fbgemm's 7-bit reduce_range)."""
    qmax = 2 ** (bits - 1) - 1 if reduce_range else 2 ** bits - 1
    lo, hi = x.detach().min().clamp(max=0), x.detach().max().clamp(min=0)
    scale = ((hi - lo) / qmax).clamp(min=EPS)
    zero = torch.round(-lo / scale).clamp(0, qmax)
    return scale, zero, qmax


def fake_quantize_activation(x: torch.Tensor, *, bits: int = 8, reduce_range: bool = True) -> torch.Tensor:
    """Quantize-dequantize an activation batch (no gradient handling; see reparams.quant.ste)."""
    scale, zero, qmax = dynamic_activation_qparams(x, bits=bits, reduce_range=reduce_range)
    return (torch.clamp(torch.round(x / scale) + zero, 0, qmax) - zero) * scale
