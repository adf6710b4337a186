"""Sparse variational dropout (Molchanov et al. 2017), also for LSTM/GRU weights
(Lobacheva et al. 2017).

Per weight: theta and log sigma^2 (additive re-parametrisation), local
re-parametrisation for Linear / Conv, one weight sample per forward pass for
recurrent and embedding weights. The loss adds beta_t * sum KL / N (the ELBO per
training example, N = training-set size), beta_t warmed up linearly from 0 to
`kl_weight` over the first `warmup` fraction of the phase. `finalize` keeps weights
with log alpha <= threshold (3) and bakes theta there, zero elsewhere.

    >>> ns.create("variational_dropout", warmup=0.3)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from netshrink.core.context import PrepareContext, StepContext
from netshrink.core.method import Method
from netshrink.core.reparam import attach, bake, original, reparams_of
from netshrink.errors import RecipeError, TargetError
from netshrink.methods.regularize import record_dead
from netshrink.reparams.variational import VariationalWeight

VD_KINDS = ("linear", "conv", "recurrent", "embedding")


@dataclass
class VariationalDropout(Method):
    name = "variational_dropout"
    summary = "sparse variational dropout (Molchanov 2017; LSTM/GRU: Lobacheva 2017), prune log alpha > 3"

    threshold: float = 3.0
    init_log_sigma2: float = -10.0
    kl_weight: float = 1.0
    # Fraction of the phase's optimiser steps over which the KL weight grows from 0.
    warmup: float = 0.3
    # N of the ELBO; 0 means the size of the training data.
    dataset_size: int = 0
    local_reparam: bool = True

    def validate(self):
        self.check(-10 < self.threshold < 10, "threshold", "in (-10, 10) (log alpha is clipped there)")
        self.check(self.init_log_sigma2 < 5, "init_log_sigma2", "< 5")
        self.check(self.kl_weight >= 0, "kl_weight", ">= 0")
        self.check(0 <= self.warmup <= 1, "warmup", "in [0, 1]")
        self.check(self.dataset_size >= 0, "dataset_size", ">= 0")

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self.sites_ = [s for s in self.sites(model) if s.tensor.dim() >= 2]
        bad = [s.name for s in self.sites_ if s.kind not in VD_KINDS]
        if bad or not self.sites_:
            raise TargetError(f"{self.name}: needs Linear, Conv, LSTM/GRU or Embedding weights; got {bad or 'none'}")
        n = self.dataset_size or ctx.num_samples()
        if n <= 0:
            raise RecipeError(f"{self.name}: dataset_size must be set when there is no training data to count")
        self.n_ = n
        self.steps_total_ = ctx.steps_total or 0
        self.reparams_ = []
        for s in self.sites_:
            lrt = self.local_reparam and s.kind in ("linear", "conv")
            rp = VariationalWeight(s.tensor.shape, init_log_sigma2=self.init_log_sigma2, threshold=self.threshold,
                                   weight_noise=not lrt, keep=s.tensor.detach() != 0)
            attach(s, rp)
            if lrt:
                rp.install_lrt(s.module)
            self.reparams_.append(rp)

    def beta(self, step: int, steps_total: int | None) -> float:
        """The KL weight at `step`: linear warm-up from 0, then `kl_weight`."""
        total = steps_total or self.steps_total_
        if self.warmup <= 0 or not total:
            return self.kl_weight
        return self.kl_weight * min(1.0, step / (self.warmup * total))

    def kl(self) -> torch.Tensor:
        """Sum of the approximate KL over every variational weight."""
        return torch.stack([rp.kl(self._theta(s)) for s, rp in zip(self.sites_, self.reparams_)]).sum()

    @staticmethod
    def _theta(site) -> torch.Tensor:
        # theta sits under the chain; VD is expected to be its first link.
        return original(site.module, site.param_name)

    def loss(self, ctx: StepContext):
        b = self.beta(ctx.step, ctx.steps_total)
        return None if b == 0 else b * self.kl() / self.n_

    @torch.no_grad()
    def sparsity(self) -> dict[str, float]:
        """Fraction of weights with log alpha > threshold, per site."""
        return {s.name: float(rp.pruned(self._theta(s)).float().mean())
                for s, rp in zip(self.sites_, self.reparams_)}

    def finalize(self, model: nn.Module) -> None:
        self.layer_sparsity_ = self.sparsity()
        for s, rp in zip(self.sites_, self.reparams_):
            rp.remove_lrt()
            if rp in reparams_of(s.module, s.param_name):
                bake(s.module, s.param_name, VariationalWeight)
        self.dead_units_, self.dead_inputs_ = record_dead(self.sites_)
