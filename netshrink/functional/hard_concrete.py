"""The hard-concrete distribution of L0 gates (Louizos, Welling & Kingma 2018).

    u ~ U(0, 1)
    s = sigmoid((log u - log(1 - u) + log_alpha) / beta)
    s_bar = s * (zeta - gamma) + gamma
    z = clip(s_bar, 0, 1)
expected L0 (probability a gate is non-zero): sigmoid(log_alpha - beta * log(-gamma / zeta))
test-time gate: z_hat = clip(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)

    >>> test_gate(torch.tensor([0.0]))         # sigmoid(0) * 1.2 - 0.1
    tensor([0.5000])
"""
from __future__ import annotations

import math

import torch

BETA = 2.0 / 3.0
GAMMA = -0.1
ZETA = 1.1


def sample(log_alpha: torch.Tensor, *, u: torch.Tensor | None = None, beta: float = BETA,
           gamma: float = GAMMA, zeta: float = ZETA, eps: float = 1e-6) -> torch.Tensor:
    """A gate sample z in [0, 1], shape of `log_alpha`; `u` (same shape) fixes the noise."""
    if u is None:
        u = torch.rand_like(log_alpha)
    u = u.clamp(eps, 1 - eps)  # log u and log(1-u) stay finite
    s = torch.sigmoid((torch.log(u) - torch.log1p(-u) + log_alpha) / beta)
    return torch.clamp(s * (zeta - gamma) + gamma, 0.0, 1.0)


def prob_nonzero(log_alpha: torch.Tensor, *, beta: float = BETA, gamma: float = GAMMA,
                 zeta: float = ZETA) -> torch.Tensor:
    """P(z != 0) = 1 - Q(s <= 0) = sigmoid(log_alpha - beta log(-gamma / zeta)): the expected L0."""
    return torch.sigmoid(log_alpha - beta * math.log(-gamma / zeta))


def test_gate(log_alpha: torch.Tensor, *, gamma: float = GAMMA, zeta: float = ZETA) -> torch.Tensor:
    """The deterministic test-time gate: clip(sigmoid(log_alpha)(zeta - gamma) + gamma, 0, 1)."""
    return torch.clamp(torch.sigmoid(log_alpha) * (zeta - gamma) + gamma, 0.0, 1.0)


def init_log_alpha(shape, *, drop_rate: float, std: float = 1e-2, generator=None) -> torch.Tensor:
    """Louizos et al.'s initialisation: N(log(1 - p) - log p, std), p = initial drop rate."""
    mean = math.log(1 - drop_rate) - math.log(drop_rate)
    return mean + std * torch.randn(shape, generator=generator)
