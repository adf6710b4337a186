"""Activation-aware scaling: AWQ (Lin et al. 2024) and SmoothQuant (Xiao et al. 2023).

Both rewrite y = W x as y = (W diag(s)) (x / s) for a per-input-channel s (cols,):
AWQ so that the salient input channels (large mean |x_j|) are quantized with less
relative error (weight-only), SmoothQuant so that activation outliers move into the
weights and int8 activations keep accuracy (W8A8).

    AWQ:         s = mean|X_j|^alpha, normalised by sqrt(max s * min s); alpha on a grid
                 in [0, 1) minimising sum_layers ||Q(W diag s)(X / s) - W X||^2 on sampled rows.
    SmoothQuant: s_j = max|X_j|^alpha / max|W_:j|^(1 - alpha)   (max over every layer sharing X).
"""
from __future__ import annotations

from typing import Callable

import torch


def awq_scale(mean_abs: torch.Tensor, alpha: float) -> torch.Tensor:
    """(cols,) s = mean|x|^alpha / sqrt(max * min), as the AWQ reference normalises it."""
    s = mean_abs.clamp(min=1e-4).pow(alpha).clamp(min=1e-4)
    return s / (s.max() * s.min()).sqrt()


@torch.no_grad()
def awq_search(weights: list[torch.Tensor], x: torch.Tensor, mean_abs: torch.Tensor,
               quant: Callable[[torch.Tensor], torch.Tensor], grid: int = 20) -> tuple[torch.Tensor, float, float]:
    """weights: each (out_i, cols) reading the same input; x: (tokens, cols) sampled inputs;
    quant: W -> quantize-dequantize(W). Returns (best s (cols,), its alpha, its squared error)."""
    refs = [x @ w.t() for w in weights]                                     # (tokens, out_i)
    best = (torch.ones_like(mean_abs), 0.0, float("inf"))
    for i in range(grid):
        alpha = i / grid
        s = awq_scale(mean_abs, alpha)
        xs = x / s                                                         # (tokens, cols)
        err = sum(float(((xs @ quant(w * s).t() - r) ** 2).sum()) for w, r in zip(weights, refs))
        if err < best[2]:
            best = (s, alpha, err)
    return best


def smooth_scale(act_max: torch.Tensor, weights: list[torch.Tensor], alpha: float = 0.5) -> torch.Tensor:
    """(cols,) SmoothQuant's s_j = max|X_j|^alpha / max|W_:j|^(1 - alpha)."""
    w_max = torch.stack([w.abs().amax(dim=0) for w in weights]).amax(dim=0).clamp(min=1e-5)   # (cols,)
    s = act_max.clamp(min=1e-5).pow(alpha) / w_max.pow(1 - alpha)
    return s.clamp(min=1e-5)
