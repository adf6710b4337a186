"""Weight sharing: `kmeans` (Deep Compression, Han et al. 2016) and `soft_sharing`
(soft weight-sharing with a Gaussian-mixture prior, Ullrich et al. 2017).

Both finish with layers whose weights take few distinct values plus exact zeros (pruned
weights are never clustered and stay zero), which the codec stores as sparse positions
and a codebook of bit-packed, entropy-coded indices.

    >>> recipe = ns.Recipe.of(ns.create("magnitude", sparsity=0.92), ns.create("kmeans", bits=5))
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
from torch import nn

from netshrink.core.context import PrepareContext, StepContext
from netshrink.core.method import Method
from netshrink.core.reparam import attach, bake, reparams_of
from netshrink.core.session import Session
from netshrink.core.targets import PerLayer
from netshrink.functional.kmeans1d import kmeans1d, linear_init
from netshrink.reparams.codebook import Codebook, MixturePrior, SoftShare


def _ends_with(site, kind) -> bool:
    chain = reparams_of(site.module, site.param_name)
    return bool(chain) and isinstance(chain[-1], kind)


@dataclass
class KMeans(Method):
    """Per-layer 1-D k-means over the non-zero weights (2^bits shared values), then
    fine-tuning of the centroids, each moved by the sum of its members' gradients."""

    name = "kmeans"
    summary = "k-means weight sharing (Deep Compression): linear init, zeros kept, centroid fine-tuning"

    bits: int = 5
    # Per-layer bits by target pattern (e.g. {"type:Conv2d" = 8}).
    per_layer: PerLayer[int] = field(default_factory=PerLayer)
    init: Literal["linear", "random", "density"] = "linear"
    iters: int = 100
    # Fine-tune the centroids (False: cluster once and bake).
    finetune_centroids: bool = True

    renamed: ClassVar[dict[str, str]] = {"bits_map": "'per_layer' (the same table)"}

    def validate(self):
        self.check(1 <= self.bits <= 8, "bits", "an integer in 1..8")
        bad = {k: v for k, v in self.per_layer.items() if not 1 <= v <= 8}
        self.check(not bad, "per_layer", f"a table of integer bits in 1..8 (not {bad})")
        self.check(self.iters >= 1, "iters", "an integer >= 1")

    @property
    def finetunes(self) -> bool:  # type: ignore[override]
        return self.finetune_centroids

    def _init(self, values: torch.Tensor, k: int) -> torch.Tensor:
        """Deep Compression's three initialisations: linear over [min, max] (theirs, the
        best), random (k of the weights), density (equal steps of the weights' CDF)."""
        if self.init == "linear":
            return linear_init(values, k=k)
        if self.init == "random":
            g = torch.Generator().manual_seed(0)
            return values[torch.randperm(values.numel(), generator=g)[:k]].double()
        return torch.quantile(values.double(), torch.linspace(0, 1, k, dtype=torch.float64))

    @torch.no_grad()
    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self.sites_ = self.sites(model)
        self.k_ = {}
        for site, bits in zip(self.sites_, self.per_layer.resolve(self.sites_, self.bits, owner=self.name)):
            w = site.tensor.detach()
            keep = w != 0                                    # pruned weights are not clustered
            values = w[keep]
            k = 2 ** bits
            init = self._init(values, k) if values.numel() > k else None
            centroids, idx = kmeans1d(values, k=k, iters=self.iters, init=init)
            index = torch.zeros(w.shape, dtype=torch.int64)
            index[keep] = idx
            if centroids.numel() == 0:                       # an all-zero layer
                centroids = torch.zeros(1)
            rp = Codebook(centroids, index, keep)
            rp.centroids.requires_grad_(self.finetune_centroids)
            attach(site, rp)
            self.k_[site.name] = rp.k

    def finalize(self, model: nn.Module) -> None:
        for site in self.sites_:
            if _ends_with(site, Codebook):
                bake(site.module, site.param_name)


@dataclass
class SoftSharing(Method):
    """Retrain with loss CE - tau/N log p(w, theta) under a Gaussian mixture prior learned
    jointly (17 components, one fixed at zero with pi_0 = 0.999), then merge close
    components and snap each weight to the mean of its most responsible component.

    Ullrich, Meeds & Welling (2017) and the authors' tutorial code: the data term is a
    sum over the N training examples; our loss is the mean cross-entropy, so the prior
    term (mixture log-likelihood of every weight plus the Gamma hyperpriors on the
    precisions) is divided by N (the size of the training data) and weighted by
    tau = 0.005. Adam with separate learning rates: the weights at the fine-tuning lr
    (5e-4 in the paper), the mixture means at `lr_means` (1e-4), the log-precisions and
    mixing logits at `lr_prior` (3e-3). The means start evenly spaced over the range of
    the pretrained weights, every component with std `init_std` (0.25).
    """

    name = "soft_sharing"
    summary = "soft weight-sharing (Ullrich et al. 2017): Gaussian-mixture prior, merge, snap to means"

    tau: float = 0.005
    components: int = 17
    pi_zero: float = 0.999
    # Merge components whose symmetric KL divergence is below this, after retraining.
    merge_kl: float = 1.0
    lr_means: float = 1e-4
    lr_prior: float = 3e-3
    # Initial std of every component (the authors' code: 0.25).
    init_std: float = 0.25
    # Gamma(alpha, beta) hyperpriors (rate beta) on the precisions: zero component and the others.
    gamma_zero: tuple[float, float] = (5000.0, 2.0)
    gamma_other: tuple[float, float] = (250.0, 0.1)
    # N in tau / N; 0 = the size of the fine-tuning data.
    dataset_size: int = 0

    renamed: ClassVar[dict[str, str]] = {"data_size": "'dataset_size'"}

    finetunes = False   # it runs its own fine-tuning (param groups with the prior's lrs)

    def validate(self):
        self.check(self.tau >= 0, "tau", ">= 0")
        self.check(self.components >= 2, "components", "an integer >= 2")
        self.check(0 < self.pi_zero < 1, "pi_zero", "in (0, 1)")
        self.check(self.merge_kl >= 0, "merge_kl", ">= 0")
        self.check(self.lr_means > 0, "lr_means", "> 0")
        self.check(self.lr_prior > 0, "lr_prior", "> 0")
        self.check(self.init_std > 0, "init_std", "> 0")
        for f in ("gamma_zero", "gamma_other"):
            self.check(all(x > 0 for x in getattr(self, f)), f, "a pair [alpha, beta] of positive numbers")
        self.check(self.dataset_size >= 0, "dataset_size", "an integer >= 0")

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self.sites_ = self.sites(model)
        with torch.no_grad():
            ws = torch.cat([s.tensor.detach().reshape(-1) for s in self.sites_])
        self.prior_ = MixturePrior(float(ws.min()), float(ws.max()), components=self.components,
                                   pi_zero=self.pi_zero, init_std=self.init_std, gamma_zero=tuple(self.gamma_zero),
                                   gamma_other=tuple(self.gamma_other))
        for site in self.sites_:
            attach(site, SoftShare(self.prior_))
        n = self.dataset_size or ctx.num_samples()
        self.scale_ = self.tau / max(n, 1)
        if ctx.fit is not None and ctx.data is not None and ctx.finetune is not None and ctx.finetune.epochs > 0:
            cfg = ctx.finetune
            prior_ids = {id(p) for p in self.prior_.parameters()}
            weights = [p for p in model.parameters() if p.requires_grad and id(p) not in prior_ids]
            # The prior's parameters get no weight decay (it would pull the means to 0).
            groups = [{"params": weights, "lr": cfg.lr, "weight_decay": cfg.weight_decay},
                      {"params": [self.prior_.means], "lr": self.lr_means},
                      {"params": [self.prior_.log_precisions, self.prior_.logits], "lr": self.lr_prior}]
            opt = torch.optim.Adam(groups, weight_decay=0.0)
            ctx.fit(model, cfg, hooks=Session(model, [self]), optimizer=opt)

    def loss(self, ctx: StepContext) -> torch.Tensor | None:
        weights = [s.tensor for s in self.sites_]
        return self.scale_ * self.prior_.neg_log_prob(weights)

    def finalize(self, model: nn.Module) -> None:
        self.components_ = self.prior_.merge(self.merge_kl)
        for site in self.sites_:
            if _ends_with(site, SoftShare):
                bake(site.module, site.param_name)
