"""The "grid" encoding: float32 tensors whose groups each lie on a uniform grid k * s.

Uniform quantization per channel or per group (netshrink.functional.quantize) leaves
every group of weights on its own grid w = fl(k * s), k an integer, s the group's scale.
Such a tensor has thousands of distinct floats, so the codebook cannot take it and it
would be stored dense; as a grid it costs one fp32 scale and one int16 offset per group
plus an entropy-coded stream of k - k_min (<= 256 symbols).

Groups are G equal, contiguous chunks of the flattened tensor: G = 1 (per tensor),
G = shape[0] (per output channel), or n / g for group-wise quantization with g | row
length (any divisor >= 8). Detection recovers s from the values and keeps a grid only if decoding
reproduces every float bit for bit, so the encoding is lossless by construction.
"""
from __future__ import annotations

import numpy as np

MIN_GROUP = 8                           # smallest group-wise quantization group tried
MAX_SPAN = 256                          # k - k_min must fit one 8-bit symbol
_NUDGES = (0, 1, -1, 2, -2)             # ulps around the estimated scale


def decode(k: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """(G, g) integer k and (G,) float32 scales -> (G, g) float32 fl(k * s)."""
    return k.astype(np.float32) * scales.astype(np.float32)[:, None]


def group_counts(shape: tuple[int, ...]) -> list[int]:
    """Candidate numbers of groups for a tensor of `shape`, fewest first."""
    n = int(np.prod(shape)) if shape else 1
    out = [1]
    if len(shape) >= 2 and shape[0] > 1:
        out.append(shape[0])
        row = n // shape[0]
        out += [n // g for g in range(row - 1, MIN_GROUP - 1, -1) if row % g == 0]
    return out


def find(x: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """x: (n,) float32. (scales (G,), offsets (G,) int16, symbols (n,) uint8) when every
    group is exactly fl(k * s) with a k span of at most 256, else None."""
    rows = x.reshape(groups, -1)
    if not np.isfinite(rows).all():
        return None
    scales = np.full(groups, np.nan, dtype=np.float32)
    codes = np.zeros(rows.shape, dtype=np.float32)
    open_ = np.ones(groups, dtype=bool)
    for guess in _guesses(rows):
        for nudge in _NUDGES:
            s = _ulps(guess, nudge)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                k = np.rint(rows / s[:, None])
                exact = (decode(k, s).view(np.uint32) == rows.view(np.uint32)).all(axis=1)
                # A finer grid (s / 15 for a 5-bit group, say) can reproduce every float
                # too, but spans more than one 8-bit symbol: keep looking for the coarse one.
                narrow = (k.max(axis=1) - k.min(axis=1)) < MAX_SPAN
            hit = open_ & exact & narrow & (s > 0) & np.isfinite(s)
            scales[hit], codes[hit] = s[hit], k[hit]
            open_ &= ~hit
            if not open_.any():
                break
        if not open_.any():
            break
    if open_.any():
        return None
    k = codes.astype(np.int64)
    # An integer k has no sign of zero: a -0.0 weight (fl(-0.0 * s) with k = -0.0 above)
    # would decode as +0.0, so the grid is verified again on the integers it stores.
    if not (decode(k, scales).view(np.uint32) == rows.view(np.uint32)).all():
        return None
    lo, hi = k.min(axis=1), k.max(axis=1)
    if (hi - lo >= MAX_SPAN).any() or (np.abs(lo) > 32767).any():
        return None
    return scales, lo.astype(np.int16), (k - lo[:, None]).astype(np.uint8).reshape(-1)


def plausible(group: np.ndarray) -> bool:
    """A cheap necessary test that one group (g,) float32 lies on a grid k * s with
    |k| <= 256: for some k_min in 1..256, every magnitude over (smallest magnitude /
    k_min) is within rounding of an integer <= 256. Dense trained weights fail it at
    once, so they cost the encoder almost nothing."""
    a = np.abs(group[group != 0]).astype(np.float64)
    if a.size == 0:
        return True
    if not np.isfinite(a).all():
        return False
    s = a.min() / np.arange(1, MAX_SPAN + 1)                  # (256,) candidate scales
    r = a[None, :] / s[:, None]
    ok = (np.abs(r - np.rint(r)) <= 1e-3) & (r <= MAX_SPAN + 0.5)
    return bool(ok.all(axis=1).any())


def _guesses(rows: np.ndarray):
    """Estimates of each group's scale. First the scales a min-max calibration at 2..8
    bits gives (|w|max / (2^(b-1) - 1) symmetric; range / (2^b - 1), range / (2^b - 2)
    or |w|max / (2^b - 1) affine, the last when the grid is clamped to contain 0), fewest
    bits first so a group gets its coarsest exact grid; then the smallest step between
    distinct magnitudes (exact when two neighbouring grid points are both used)."""
    a = np.sort(np.abs(rows), axis=1)
    amax = a[:, -1]
    zero = amax == 0
    span = rows.max(axis=1) - rows.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        for b in range(2, 9):
            for top, levels in ((amax, (1 << (b - 1)) - 1), (span, (1 << b) - 1),
                                (span, (1 << b) - 2), (amax, (1 << b) - 1)):
                yield np.where(zero, 1.0, top / levels).astype(np.float32)
        gaps = np.diff(a, axis=1, prepend=np.zeros((rows.shape[0], 1), np.float32))
        step = np.where(gaps > 0, gaps, np.inf).min(axis=1)
        yield np.where(zero, 1.0, amax / np.maximum(np.rint(amax / step), 1)).astype(np.float32)


def _ulps(s: np.ndarray, n: int) -> np.ndarray:
    out = s.copy()
    for _ in range(abs(n)):
        out = np.nextafter(out, np.float32(np.inf if n > 0 else -np.inf)).astype(np.float32)
    return out
