"""Sparse variational dropout as a re-parametrisation of one weight.

The parametrised weight's trainable original is theta (the posterior mean); this
module adds log sigma^2 (same shape). In training:
- Linear / Conv: the weight is theta, and a forward hook adds the local
  re-parametrisation noise sqrt(x^2 sigma^2) * eps to the layer's output.
- LSTM / GRU (Lobacheva et al. 2017): the noise cannot be moved to the
  pre-activations of a recurrence, so the weight itself is sampled,
  theta + sigma * eps, once per forward pass (shared by all time steps).
In eval mode the weight is theta masked where log alpha > threshold: deterministic,
and exactly what `bake` leaves behind.
"""
from __future__ import annotations

import torch
from torch import nn

from netshrink.core.reparam import Reparam
from netshrink.functional.vd import (conv_variance, keep_mask, kl_approx, linear_variance, local_reparam,
                                     log_alpha)


class VariationalWeight(Reparam):
    """w = theta (+ noise in training); eval: theta * [log alpha <= threshold].

    >>> rp = VariationalWeight(layer.weight.shape, weight_noise=False)
    """

    def __init__(self, shape, *, init_log_sigma2: float = -10.0, threshold: float = 3.0,
                 weight_noise: bool = False, keep: torch.Tensor | None = None):
        super().__init__()
        self.log_sigma2 = nn.Parameter(torch.full(tuple(shape), float(init_log_sigma2)))
        # Weights an earlier step already removed stay exactly zero (no mean, no noise).
        self.register_buffer("keep", torch.ones(tuple(shape), dtype=torch.bool) if keep is None else keep.bool())
        self.threshold = float(threshold)
        self.weight_noise = bool(weight_noise)
        self._hook = None

    def sigma2(self) -> torch.Tensor:
        return torch.exp(self.log_sigma2) * self.keep

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        theta = theta * self.keep
        if self.training:
            if self.weight_noise:  # one weight sample per forward pass
                return theta + self.sigma2().sqrt() * torch.randn_like(theta)
            return theta  # the mean; the local re-parametrisation hook adds the noise
        return theta * keep_mask(log_alpha(theta, self.log_sigma2), threshold=self.threshold)

    def pruned(self, theta: torch.Tensor) -> torch.Tensor:
        """Weights that are zero at test time: removed before, or log alpha > threshold."""
        return ~self.keep | ~keep_mask(self.log_alpha(theta), threshold=self.threshold)

    def log_alpha(self, theta: torch.Tensor) -> torch.Tensor:
        return log_alpha(theta, self.log_sigma2)

    def kl(self, theta: torch.Tensor) -> torch.Tensor:
        """Sum of the approximate KL over this weight's (not already removed) entries."""
        return (kl_approx(self.log_alpha(theta)) * self.keep).sum()

    # -- the local re-parametrisation trick, as a forward hook on the layer ------
    def install_lrt(self, module: nn.Module) -> None:
        """Add sqrt(x^2 sigma^2) * eps to `module`'s output in training (Linear / Conv)."""
        if isinstance(module, nn.Linear):
            variance = lambda x: linear_variance(x, self.sigma2())  # noqa: E731
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            variance = lambda x: conv_variance(x, self.sigma2(), module)  # noqa: E731
        else:
            raise TypeError(f"local re-parametrisation needs a Linear or Conv layer, not {type(module).__name__}")

        def hook(mod, inputs, output):
            if not self.training:
                return output
            return local_reparam(output, variance(inputs[0]))  # (N, out, ...) mean + noise

        self._hook = module.register_forward_hook(hook)

    def remove_lrt(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
