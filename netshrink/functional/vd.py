"""Sparse variational dropout (Molchanov, Ashukha & Vetrov 2017): pure maths.

Additive re-parametrisation: w = theta + sigma * eps, eps ~ N(0, 1), with
log alpha = log sigma^2 - log theta^2. The KL to the log-uniform prior has no closed
form; the paper's approximation (constants fitted by the authors) is

    -KL ~= k1 * sigmoid(k2 + k3 * log alpha) - 1/2 * log(1 + 1/alpha) - k1

Local re-parametrisation: instead of sampling weights, sample the pre-activations,
whose mean is x W_theta and variance x^2 sigma^2 (independent per output).

    >>> kl_approx(torch.tensor([10.0])) < 1e-3      # alpha -> inf: the prior's limit
    tensor([True])
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

K1, K2, K3 = 0.63576, 1.87320, 1.48695
# Clip of log alpha used by the authors' code: keeps the KL and its gradients finite.
LOG_ALPHA_MIN, LOG_ALPHA_MAX = -10.0, 10.0
PRUNE_THRESHOLD = 3.0


def log_alpha(theta: torch.Tensor, log_sigma2: torch.Tensor, *, eps: float = 1e-8) -> torch.Tensor:
    """log sigma^2 - log theta^2, clipped to [-10, 10] (shape of theta)."""
    return torch.clamp(log_sigma2 - torch.log(theta * theta + eps), LOG_ALPHA_MIN, LOG_ALPHA_MAX)


def neg_kl_approx(log_alpha: torch.Tensor) -> torch.Tensor:
    """-KL(q(w | theta, alpha theta^2) || log-uniform), per weight, Molchanov et al. eq. 14."""
    return K1 * torch.sigmoid(K2 + K3 * log_alpha) - 0.5 * F.softplus(-log_alpha) - K1


def kl_approx(log_alpha: torch.Tensor) -> torch.Tensor:
    """KL per weight (>= 0 up to the approximation's error)."""
    return -neg_kl_approx(log_alpha)


def keep_mask(log_alpha: torch.Tensor, *, threshold: float = PRUNE_THRESHOLD) -> torch.Tensor:
    """Weights kept at test time: log alpha <= threshold (3 in the paper)."""
    return log_alpha <= threshold


def local_reparam(mean: torch.Tensor, var: torch.Tensor, *, noise: torch.Tensor | None = None) -> torch.Tensor:
    """A pre-activation sample: mean + sqrt(var) * eps, eps ~ N(0, 1) of mean's shape."""
    if noise is None:
        noise = torch.randn_like(mean)
    return mean + torch.sqrt(var + 1e-8) * noise


def linear_variance(x: torch.Tensor, sigma2: torch.Tensor) -> torch.Tensor:
    """Variance of x @ W.T when W has independent entries of variance sigma2 (out, in)."""
    return F.linear(x * x, sigma2)


def conv_variance(x: torch.Tensor, sigma2: torch.Tensor, conv: torch.nn.Module) -> torch.Tensor:
    """Variance of conv(x, W) for independent W of variance sigma2, using conv's geometry."""
    if conv.padding_mode != "zeros":
        raise ValueError("the local re-parametrisation supports zero padding only")
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[sigma2.dim() - 2]
    return fn(x * x, sigma2, None, conv.stride, conv.padding, conv.dilation, conv.groups)
