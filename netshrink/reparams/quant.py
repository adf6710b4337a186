"""Quantizing re-parametrisations with the straight-through estimator (STE).

The forward pass sees the quantized weight; the backward pass hands the gradient to the
real-valued "shadow" weight unchanged (inside the clipping range; zero outside, as in
torch.fake_quantize_*). `_STE` returns the quantized tensor itself in the forward
pass (not w + (q - w).detach(), which can be one ulp off), so the trained forward and
the baked weight are the same floats.
"""
from __future__ import annotations

import torch

from netshrink.core.reparam import Reparam
from netshrink.functional.quantize import binarize, quantize_weight, ternarize


class _STE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, w_q, pass_mask):
        ctx.save_for_backward(pass_mask)
        return w_q

    @staticmethod
    def backward(ctx, grad):
        (pass_mask,) = ctx.saved_tensors
        return grad * pass_mask, None, None


def ste(w: torch.Tensor, w_q: torch.Tensor, pass_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Forward: w_q (exactly). Backward: d/dw = pass_mask (1 where None)."""
    if pass_mask is None:
        pass_mask = torch.ones_like(w, dtype=torch.bool)
    return _STE.apply(w, w_q.detach(), pass_mask.to(w.dtype))


class FakeQuant(Reparam):
    """Uniform fake quantization of a weight.

    calibrate_each_step=False (post-training quantization): (scale, zero point) are
    computed once at construction from `w` and kept in buffers. True (QAT): they follow
    the shadow weight, recomputed (without gradient) at every forward.
    """

    def __init__(self, w: torch.Tensor, *, bits: int, symmetric: bool, granularity: str, group_size: int,
                 calibration: str, percentile: float, calibrate_each_step: bool = False):
        super().__init__()
        self.cfg = dict(bits=bits, symmetric=symmetric, granularity=granularity, group_size=group_size,
                        method=calibration, percentile=percentile)
        self.calibrate_each_step = calibrate_each_step
        _, _, s, z = quantize_weight(w.detach(), **self.cfg)
        self.register_buffer("scale", s)          # (G, 1)
        self.register_buffer("zero_point", z)     # (G, 1)

    def _quant(self, w):
        if self.calibrate_each_step and self.training:
            with torch.no_grad():
                _, _, s, z = quantize_weight(w.detach(), **self.cfg)
                self.scale.copy_(s)
                self.zero_point.copy_(z)
        return quantize_weight(w.detach(), **self.cfg, scale=self.scale, zero_point=self.zero_point)

    def forward(self, w):
        w_q, in_range, _, _ = self._quant(w)
        return ste(w, w_q, in_range)

    @torch.no_grad()
    def baked(self, original):
        return self._quant(original)[0].clone()


class Binarize(Reparam):
    """BinaryConnect / XNOR-style binary weights: alpha * sign(w) with alpha = mean|W|
    per output channel ('channel'), per tensor ('layer') or 1 ('none')."""

    def __init__(self, scaling: str = "channel"):
        super().__init__()
        self.scaling = scaling

    def forward(self, w):
        # BinaryConnect's STE: gradient passes where |w| <= 1 (the shadow weights are
        # clipped to [-1, 1] after each step, so in practice everywhere).
        return ste(w, binarize(w.detach(), scaling=self.scaling), w.detach().abs() <= 1)

    @torch.no_grad()
    def baked(self, original):
        return binarize(original, scaling=self.scaling).clone()


class Ternarize(Reparam):
    """Ternary weight networks: {-alpha, 0, +alpha} with delta = 0.7 * mean|W|.
    Weights that were already zero (pruned) stay zero: sign(0) = 0."""

    def __init__(self, delta_factor: float = 0.7):
        super().__init__()
        self.delta_factor = delta_factor

    def forward(self, w):
        return ste(w, ternarize(w.detach(), delta_factor=self.delta_factor)[0])

    @torch.no_grad()
    def baked(self, original):
        return ternarize(original, delta_factor=self.delta_factor)[0].clone()
