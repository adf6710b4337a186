"""Gaussian-mixture prior of soft weight-sharing (Ullrich, Meeds & Welling 2017).

Every weight w_i is scored under a mixture of J Gaussians,
    log p(w_i) = logsumexp_j [ log pi_j + 1/2 log(lambda_j / 2 pi) - lambda_j/2 (w_i - mu_j)^2 ],
component 0 fixed at mu_0 = 0 with a large fixed pi_0 (it prunes). Precisions lambda_j
carry Gamma(alpha, beta) hyperpriors, log Gamma(l) = (alpha - 1) log l - beta l + const.
After retraining, components that have become close are merged (smallest KL first,
moment matching) and every weight snaps to the mean of its most responsible component.

    >>> lp = log_prob(w, means=mu, log_precisions=lp_, log_pis=torch.log_softmax(logits, 0))
"""
from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def component_log_probs(w: torch.Tensor, *, means: torch.Tensor, log_precisions: torch.Tensor,
                        log_pis: torch.Tensor) -> torch.Tensor:
    """(n,) weights, (J,) params -> (n, J) log pi_j N(w | mu_j, 1/lambda_j)."""
    x = w.reshape(-1, 1)
    return (log_pis + 0.5 * (log_precisions - LOG_2PI)
            - 0.5 * torch.exp(log_precisions) * (x - means) ** 2)


def log_prob(w: torch.Tensor, *, means, log_precisions, log_pis) -> torch.Tensor:
    """sum_i log p(w_i) under the mixture (a scalar)."""
    return torch.logsumexp(component_log_probs(w, means=means, log_precisions=log_precisions,
                                               log_pis=log_pis), dim=1).sum()


def gamma_log_prob(log_precisions: torch.Tensor, *, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """sum_j log Gamma(lambda_j | alpha_j, beta_j) up to a constant, lambda = exp(log_precisions)."""
    return ((alpha - 1) * log_precisions - beta * torch.exp(log_precisions)).sum()


def kl_gauss(m1, v1, m2, v2):
    """KL(N(m1, v1) || N(m2, v2)) for variances v."""
    return 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)


def merge_components(means: torch.Tensor, variances: torch.Tensor, pis: torch.Tensor, *,
                     threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge the pair of components with the smallest symmetric KL while it is below
    `threshold`, by moment matching (mixing weights add). Component 0 (the zero spike)
    keeps mean 0 and absorbs whatever merges with it. All inputs (J,); returns the
    shorter (J',) triple, component 0 still first."""
    m, v, p = [t.detach().double().clone() for t in (means, variances, pis)]
    while m.numel() > 1:
        kl = kl_gauss(m[:, None], v[:, None], m[None, :], v[None, :])
        sym = kl + kl.T
        sym.fill_diagonal_(float("inf"))
        i, j = divmod(int(torch.argmin(sym)), m.numel())
        if float(sym[i, j]) >= threshold:
            break
        i, j = min(i, j), max(i, j)                       # keep the lower index (0 stays 0)
        pt = p[i] + p[j]
        mean = (p[i] * m[i] + p[j] * m[j]) / pt
        var = (p[i] * (v[i] + m[i] ** 2) + p[j] * (v[j] + m[j] ** 2)) / pt - mean ** 2
        m[i] = 0.0 if i == 0 else mean
        v[i], p[i] = var, pt
        keep = torch.arange(m.numel()) != j
        m, v, p = m[keep], v[keep], p[keep]
    return m, v, p


def snap(w: torch.Tensor, *, means: torch.Tensor, variances: torch.Tensor, pis: torch.Tensor) -> torch.Tensor:
    """Each weight becomes the mean of its most responsible component (argmax_j of
    pi_j N(w | mu_j, v_j)); weights of component 0 become exactly 0. The result holds
    only the values of `means` (cast to w's dtype), gathered, never recomputed."""
    logp = component_log_probs(w.double(), means=means, log_precisions=-torch.log(variances),
                               log_pis=torch.log(pis))
    idx = torch.argmax(logp, dim=1)
    idx[w.reshape(-1) == 0] = 0                          # pruned weights stay pruned
    table = means.to(w.dtype).clone()
    table[0] = 0.0
    return table[idx].reshape(w.shape)
