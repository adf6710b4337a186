"""Bits per row of a table by reverse water-filling on a diagonal Hessian.

An embedding table's input is one-hot, so its Hessian (X Xᵀ over the calibration
tokens) is diagonal: diag(c), c_i the count of token i. Quantizing row i uniformly at
b_i bits adds an error of about r_i² 2^(-2 b_i) / 12 per entry (r_i the row's range),
which the loss sees weighted by c_i. Minimising Σ_i c_i r_i² 2^(-2 b_i) under a mean of
B bits per row (the Lagrangian, as in reverse water-filling) gives

    b_i = θ + ½ log2(c_i r_i²),    θ such that mean(b_i) = B,

clamped to [lo, hi] and rounded to integers; θ is found by bisection on the rounded,
clamped widths (their mean is monotone in θ). Every row is credited `prior` occurrences,
so a row never seen in calibration gets a width from its range alone. `good_turing_prior`
sets it from the counts themselves: Good-Turing estimates the share of future tokens that
fall on unseen rows as N1 / N (N1 rows seen exactly once, N tokens), i.e. N1 / U
occurrences per unseen row over U unseen rows, in the units of the counts. On MiniLM
with 4,096 calibration sentences that is 1,079 / 26,610 = 0.04, and a fixed prior of 0.5
(12x more) spent 2.6 MB of the word table's 3.6 MB on rows 1.8 % of the held-out
tokens read.
"""
from __future__ import annotations

import torch

from netshrink.functional.quantize import calibrate, dequantize, quantize_codes


def good_turing_prior(counts: torch.Tensor) -> float:
    """Expected occurrences of one unseen row: N1 / U (Good-Turing's unseen mass N1 / N
    spread over the U unseen rows, times N). N1 = 0 counts as one; with no unseen row
    the prior only smooths the seen counts, and one occurrence is used."""
    unseen = int((counts == 0).sum())
    once = max(int((counts == 1).sum()), 1)
    return once / unseen if unseen else 1.0


def row_bits(counts: torch.Tensor, ranges: torch.Tensor, *, mean_bits: float, lo: int, hi: int,
             prior: float) -> torch.Tensor:
    """(R,) int bits per row: the widths above whose mean is the largest <= mean_bits."""
    imp = (counts.double() + prior) * ranges.double().clamp(min=1e-30) ** 2
    base = 0.5 * torch.log2(imp)

    def widths(theta: float) -> torch.Tensor:
        return torch.clamp(torch.round(theta + base), lo, hi)

    a, b = lo - float(base.max()) - 1.0, hi - float(base.min()) + 1.0   # widths(a) = lo, widths(b) = hi
    if float(widths(b).mean()) <= mean_bits:
        return widths(b).long()
    for _ in range(60):
        mid = 0.5 * (a + b)
        if float(widths(mid).mean()) <= mean_bits:
            a = mid
        else:
            b = mid
    return widths(a).long()


@torch.no_grad()
def quantize_rows(weight: torch.Tensor, bits: torch.Tensor, *, symmetric: bool,
                  calibration: str) -> torch.Tensor:
    """weight (R, d) with row i on its own uniform grid of bits[i] bits (dequantized fp32)."""
    w = weight.detach().float()
    out = torch.empty_like(w)
    for b in torch.unique(bits).tolist():
        rows = (bits == b).nonzero().flatten()
        s, z = calibrate(w[rows], bits=int(b), symmetric=symmetric, method=calibration)
        codes = quantize_codes(w[rows], scale=s, zero_point=z, bits=int(b), symmetric=symmetric)
        out[rows] = dequantize(codes, scale=s, zero_point=z)
    return out
