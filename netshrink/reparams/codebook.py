"""Weight sharing: a weight drawn from a small codebook.

`Codebook` (Deep Compression): w_ij = c[idx_ij] where the weight was not pruned, else 0.
The centroids c (k,) are the trainable parameters; autograd of the gather `c[idx]`
scatter-adds, so a centroid's gradient is the sum of its members' gradients, exactly
the paper's centroid fine-tuning. The shadow weight underneath gets no gradient.

`MixturePrior` + `SoftShare` (Ullrich et al. 2017): during retraining the weight is
itself (identity), while a Gaussian-mixture prior shared by every layer pulls weights
into clusters; baking snaps each weight to its component's mean (0 for the zero spike).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from netshrink.core.reparam import Reparam
from netshrink.functional import mixture


class Codebook(Reparam):
    """centroids (k,) float32, index (shape of w) int64, keep (shape of w) bool."""

    def __init__(self, centroids: torch.Tensor, index: torch.Tensor, keep: torch.Tensor):
        super().__init__()
        self.centroids = nn.Parameter(centroids.detach().clone().float())
        self.register_buffer("index", index.to(torch.int64))
        self.register_buffer("keep", keep.to(torch.bool))

    def forward(self, w):
        # Gathered centroid values (never recomputed per element) and exact zeros:
        # the layer holds at most k + 1 distinct floats.
        return torch.where(self.keep, self.centroids[self.index], torch.zeros((), dtype=self.centroids.dtype))

    @torch.no_grad()
    def baked(self, original):
        return self.forward(original).to(original.dtype).clone()

    @property
    def k(self) -> int:
        return self.centroids.numel()


class MixturePrior(nn.Module):
    """J-component Gaussian mixture over the weights of every targeted layer.

    Component 0 is the zero spike: mean fixed at 0 and mixing weight fixed at `pi_zero`;
    the other J-1 means start evenly spaced over [w_min, w_max], their mixing weights
    share 1 - pi_zero (learned through logits, equal at the start). Precisions are
    learned in log space and all start at 1 / init_std^2 (the authors' code: std 0.25,
    wide, so that every component sees the weights of its region; starting them at
    the Gamma hyperprior's mean alpha / beta = 2500, i.e. std 0.02, leaves the gaps
    between the means to the zero spike, which then swallows most weights). The
    hyperpriors Gamma(alpha, beta) (rate beta) act through `neg_log_prob`.
    """

    def __init__(self, w_min: float, w_max: float, *, components: int = 17, pi_zero: float = 0.999,
                 init_std: float | None = 0.25, gamma_zero=(5000.0, 2.0), gamma_other=(250.0, 0.1)):
        super().__init__()
        j = components - 1
        means = torch.linspace(w_min, w_max, j)
        self.means = nn.Parameter(means)                                          # (J-1,)
        alpha = torch.tensor([gamma_zero[0]] + [gamma_other[0]] * j)
        beta = torch.tensor([gamma_zero[1]] + [gamma_other[1]] * j)
        # init_std None: start at the hyperprior's mean alpha / beta.
        init = torch.log(alpha / beta) if init_std is None else torch.full((components,), -2 * math.log(init_std))
        self.log_precisions = nn.Parameter(init.float())                          # (J,)
        self.logits = nn.Parameter(torch.zeros(j))                                # (J-1,)
        self.pi_zero = pi_zero
        self.register_buffer("gamma_alpha", alpha)
        self.register_buffer("gamma_beta", beta)
        self.merged_ = None   # (means, variances, pis) after `merge`

    def params(self):
        """(means (J,), log_precisions (J,), log_pis (J,)) with component 0 the zero spike."""
        means = torch.cat([self.means.new_zeros(1), self.means])
        log_pis = torch.cat([self.means.new_tensor([math.log(self.pi_zero)]),
                             math.log1p(-self.pi_zero) + torch.log_softmax(self.logits, 0)])
        return means, self.log_precisions, log_pis

    def neg_log_prob(self, weights: list[torch.Tensor]) -> torch.Tensor:
        """-log p(w) - log p(lambda): the prior's part of the loss (before tau / N)."""
        means, lp, log_pis = self.params()
        w = torch.cat([t.reshape(-1) for t in weights])          # one pass over every weight
        total = mixture.log_prob(w, means=means, log_precisions=lp, log_pis=log_pis)
        return -(total + mixture.gamma_log_prob(lp, alpha=self.gamma_alpha, beta=self.gamma_beta))

    @torch.no_grad()
    def merge(self, threshold: float) -> int:
        means, lp, log_pis = self.params()
        self.merged_ = mixture.merge_components(means, torch.exp(-lp), torch.exp(log_pis), threshold=threshold)
        return self.merged_[0].numel()

    @torch.no_grad()
    def snap(self, w: torch.Tensor) -> torch.Tensor:
        if self.merged_ is None:
            means, lp, log_pis = self.params()
            self.merged_ = (means.double(), torch.exp(-lp).double(), torch.exp(log_pis).double())
        m, v, p = self.merged_
        return mixture.snap(w, means=m, variances=v, pis=p)


class SoftShare(Reparam):
    """Identity while retraining (the prior acts through the method's loss); bakes to the
    snapped weight. `prior` is shared by all layers of one soft_sharing step."""

    def __init__(self, prior: MixturePrior):
        super().__init__()
        self.prior = prior

    def forward(self, w):
        return w

    @torch.no_grad()
    def baked(self, original):
        return self.prior.snap(original).clone()
