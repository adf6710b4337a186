"""Lottery tickets (Frankle & Carbin 2019) with rewinding (Renda et al. 2020), and
early-bird tickets (You et al. 2020).

lottery: iterative magnitude pruning. Each round prunes `rate` of the remaining
weights of every layer (`output_rate` for the output layer), then continues from:
  rewind="init"     the survivors' initial values theta_0 (Frankle & Carbin),
  rewind="step"     their values after `rewind_step` = k steps of training from theta_0
                    (Frankle et al. 2020), theta_0 trained on the first k steps of the
                    round's schedule,
  rewind="lr"       the trained values, with the learning-rate schedule rewound to step k
                    (Renda et al. 2020; k = `rewind_step`, 0 replays the whole schedule),
  rewind="finetune" the trained values, at a small constant learning rate (Renda's baseline),
and trains the round's budget (the recipe's [finetune], T steps). After rewinding to step
k ("step", "lr") a round trains the remaining T - k steps, continuing the schedule from
step k, as the papers do. `reinit = true` is the control of Frankle & Carbin: the same
masks, but the last round starts from fresh random weights (and trains all T steps).

theta_0 is the model's factory built under `seed` (seed 0 is the seed every zoo
baseline is built with, so for a zoo baseline it is the true initialisation).

early_bird: trains from theta_0 and, after each epoch, draws the magnitude mask at the
target sparsity; the ticket is drawn when the normalised Hamming distance between
consecutive epochs' masks stays below `epsilon` over the last `window` epochs. The
fine-tuning phase that follows trains the ticket.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from netshrink.core import factories
from netshrink.core.context import PrepareContext
from netshrink.core.reparam import original
from netshrink.core.targets import Site
from netshrink.errors import RecipeError
from netshrink.functional.prune import hamming_distance, topk_mask
from netshrink.functional.schedule import geometric_rounds
from netshrink.methods.pruning import MaskPruning
from netshrink.train.loop import batches_per_epoch, lr_factor


def fresh_init(model: nn.Module, seed: int) -> nn.Module:
    """A freshly initialised copy of `model`: its zoo factory under `seed`, or a copy
    whose modules are reset (in module order) under `seed`."""
    factory = factories.factory_of(model)
    torch.manual_seed(seed)
    if factory is not None:
        return factories.create(factory["name"], **factory["kwargs"])
    fresh = copy.deepcopy(model)
    for m in fresh.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return fresh


def site_values(model: nn.Module, sites: list[Site]) -> list[torch.Tensor]:
    """The plain values of `sites`' parameters in another (unparametrised) copy."""
    return [getattr(model.get_submodule(s.module_name), s.param_name).detach().clone() for s in sites]


def trainable(site: Site) -> torch.Tensor:
    """The tensor the optimiser updates underneath a site's parametrisation."""
    return original(site.module, site.param_name)


@torch.no_grad()
def rewind_(sites: list[Site], values: list[torch.Tensor], masks: list[torch.Tensor]) -> None:
    """Set every site's survivors to `values` exactly (pruned entries to zero)."""
    for site, v, m in zip(sites, values, masks):
        trainable(site).copy_(v * m)


@torch.no_grad()
def rewind_rest_(model: nn.Module, source: nn.Module, skip: set[str]) -> None:
    """Rewind the parameters no mask covers (biases, norms) to `source`'s values."""
    src = dict(source.named_parameters())
    for name, p in model.named_parameters():
        clean = name.replace(".parametrizations.", ".").replace(".original", "")
        if clean in src and clean not in skip and src[clean].shape == p.shape:
            p.copy_(src[clean])


class _Stop(Exception):
    pass


class _ScheduleSlice:
    """Fit hooks that make a fit run steps [start, stop) of `cfg`'s schedule over
    `total` steps: step i of the fit gets the lr of step start + i, and the fit stops
    after stop - start steps (the fit itself must be given at least that many)."""

    def __init__(self, cfg, start: int, stop: int, total: int):
        self.cfg, self.start, self.stop, self.total = cfg, start, stop, total

    def loss(self, c):   # called after the trainer set the lr, before the optimiser steps
        for g in c.optimizer.param_groups:
            g["lr"] = self.cfg.lr * lr_factor(self.cfg, self.start + c.step, self.total)
        return None

    def after_step(self, c):
        if self.start + c.step + 1 >= self.stop:
            raise _Stop


def fit_slice(fit, model: nn.Module, cfg, batches, start: int, stop: int) -> None:
    """Train `model` on steps [start, stop) of the schedule of `cfg` (T = epochs x
    steps per epoch of `batches`, a core.batches.Batches), with a fresh optimiser:
    `fit(model, cfg, hooks)` is the trainer."""
    spe = batches_per_epoch(batches, cfg.batch_size)
    total = spe * cfg.epochs
    stop = min(stop, total)
    if stop <= start:
        return
    if start == 0 and stop == total:
        fit(model, cfg)
        return
    try:
        fit(model, cfg.replace(epochs=math.ceil((stop - start) / spe)), _ScheduleSlice(cfg, start, stop, total))
    except _Stop:
        model.eval()


@dataclass
class Lottery(MaskPruning):
    """Iterative magnitude pruning with rewinding.

    >>> ns.create("lottery", sparsity=0.95, rate=0.2, output_rate=0.1, rewind="init")
    """

    name = "lottery"
    summary = "lottery tickets: iterative magnitude pruning, rewind to init / step k / LR, or fine-tune; reinit control"
    finetunes = False   # every round trains inside prepare

    sparsity: float = 0.9
    rate: float = 0.2
    output_rate: float = 0.1
    output_layer: str = ""          # default: the last selected weight
    rewind: Literal["init", "step", "lr", "finetune"] = "init"
    rewind_step: int = 0
    finetune_lr_scale: float = 0.1  # rewind="finetune": lr of the constant schedule, x base lr
    reinit: bool = False
    seed: int = 0                   # theta_0 = the model's factory under this seed (reinit: seed + 1)

    renamed: ClassVar[dict[str, str]] = {**MaskPruning.renamed, "init_seed": "'seed'"}

    def validate(self):
        super().validate()
        self.check(0.0 < self.sparsity < 1.0, "sparsity", "in (0, 1)")
        self.check(0.0 < self.rate < 1.0, "rate", "in (0, 1)")
        self.check(0.0 <= self.output_rate < 1.0, "output_rate", "in [0, 1)")
        self.check(self.rewind_step >= 0, "rewind_step", "an integer >= 0")
        self.check(self.rewind != "step" or self.rewind_step > 0, "rewind_step", "> 0 when rewind = \"step\"")
        self.check(self.rewind in ("step", "lr") or self.rewind_step == 0, "rewind_step",
                   "0 unless rewind = \"step\" or \"lr\"")
        self.check(self.finetune_lr_scale > 0, "finetune_lr_scale", "> 0")

    # -- the schedule of keep fractions ------------------------------------------------
    def keep_schedule(self, sizes: list[int], out_index: int) -> list[list[float]]:
        """Per round, per layer: the fraction of the layer kept after the round.
        Layers shrink by (1 - rate) per round, the output layer by (1 - output_rate);
        the last round's non-output rate is set so that the overall sparsity is
        exactly `sparsity`."""
        rounds = geometric_rounds(self.sparsity, self.rate)
        total, out_n = sum(sizes), sizes[out_index]
        plan = []
        for r in range(1, rounds + 1):
            keep_out = (1 - self.output_rate) ** r
            keep = (1 - self.rate) ** r
            if r == rounds:
                rest = total - out_n
                keep = ((1 - self.sparsity) * total - keep_out * out_n) / rest if rest else keep
                if keep < 0:   # the output layer alone exceeds the budget: prune it too
                    keep, keep_out = 0.0, (1 - self.sparsity) * total / out_n
                keep = min(keep, (1 - self.rate) ** (r - 1))
            plan.append([keep_out if i == out_index else keep for i in range(len(sizes))])
        return plan

    def _out_index(self, sites: list[Site]) -> int:
        if not self.output_layer:
            return len(sites) - 1
        hits = [i for i, s in enumerate(sites) if s.name in (self.output_layer, f"{self.output_layer}.weight")]
        if not hits:
            raise RecipeError(f"lottery: output_layer {self.output_layer!r} is not among the pruned weights "
                              f"({', '.join(s.name for s in sites)})")
        return hits[0]

    def _train(self, model, ctx: PrepareContext):
        """One round: the whole budget, or its last T - k steps after a rewind to step k."""
        cfg = ctx.finetune
        if self.rewind == "finetune":
            ctx.fit(model, cfg.replace(lr=cfg.lr * self.finetune_lr_scale, schedule="constant"))
            return
        k = self.rewind_step if self.rewind in ("step", "lr") else 0
        fit_slice(ctx.fit, model, cfg, ctx.batches, k, 10 ** 18)

    def _theta_k(self, model: nn.Module, ctx: PrepareContext) -> nn.Module:
        """theta_0, or theta_k: theta_0 trained on the first `rewind_step` steps of the
        round's schedule (the same schedule the rounds then continue from step k)."""
        theta = fresh_init(model, self.seed)
        if self.rewind == "step":
            fit_slice(ctx.fit, theta, ctx.finetune, ctx.batches, 0, self.rewind_step)
        return theta

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        if ctx.fit is None or ctx.data is None:
            raise RecipeError("lottery: needs training data (it trains its own rounds); use compress_ with data")
        self.sites_ = self.sites(model)
        self.remember_input(ctx)
        out_i = self._out_index(self.sites_)
        sizes = [s.tensor.numel() for s in self.sites_]
        theta = self._theta_k(model, ctx) if self.rewind in ("init", "step") else None
        theta_vals = site_values(theta, self.sites_) if theta is not None else None
        self.apply_masks(self.sites_, [torch.ones_like(s.tensor, dtype=torch.bool) for s in self.sites_])
        self.history_ = []
        plan = self.keep_schedule(sizes, out_i)
        for r, keeps in enumerate(plan, 1):
            with torch.no_grad():   # prune the smallest trained survivors (pruned ones score 0)
                masks = [topk_mask(s.tensor.detach().abs(), sparsity=1 - k) & self.mask_of(s).mask
                         for s, k in zip(self.sites_, keeps)]
            self.apply_masks(self.sites_, masks)
            masks = [self.mask_of(s).mask for s in self.sites_]
            if self.reinit and r == len(plan):
                rnd = fresh_init(model, self.seed + 1)
                rewind_(self.sites_, site_values(rnd, self.sites_), masks)
                rewind_rest_(model, rnd, {s.name for s in self.sites_})
            elif theta is not None:
                rewind_(self.sites_, theta_vals, masks)
                rewind_rest_(model, theta, {s.name for s in self.sites_})
            self._train(model, ctx)
            kept = sum(int(m.sum()) for m in masks)
            self.history_.append({"round": r, "sparsity": 1 - kept / sum(sizes)})
            probe = ctx.extras.get("on_round")   # a benchmark's probe: fn(round, model, sparsity)
            if probe is not None:
                probe(r, model, 1 - kept / sum(sizes))


class _EarlyStop(Exception):
    pass


@dataclass
class EarlyBird(MaskPruning):
    """Draw the ticket early: when consecutive epochs' masks stop changing.

    >>> ns.create("early_bird", sparsity=0.9, epsilon=0.1, window=5, max_epochs=20)
    """

    name = "early_bird"
    summary = "early-bird tickets: draw the mask once epoch-to-epoch mask distance < epsilon over a window"

    sparsity: float = 0.9
    epsilon: float = 0.1
    window: int = 5
    max_epochs: int = 20
    lr: float = 1e-3
    seed: int = 0                   # the search starts from the model's factory under this seed

    renamed: ClassVar[dict[str, str]] = {**MaskPruning.renamed, "init_seed": "'seed'"}

    def validate(self):
        super().validate()
        self.check(0.0 <= self.sparsity < 1.0, "sparsity", "in [0, 1)")
        self.check(0.0 < self.epsilon < 1.0, "epsilon", "in (0, 1)")
        self.check(self.window >= 1, "window", "an integer >= 1")
        self.check(self.max_epochs >= 1, "max_epochs", "an integer >= 1")
        self.check(self.lr > 0, "lr", "> 0")

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        if ctx.fit is None or ctx.data is None:
            raise RecipeError("early_bird: needs training data (it trains to find the ticket); use compress_ with data")
        self.sites_ = self.sites(model)
        self.remember_input(ctx)
        search = fresh_init(model, self.seed)
        sites = [Site(s.module_name, s.param_name, search.get_submodule(s.module_name)) for s in self.sites_]
        cfg = ctx.finetune.replace(epochs=self.max_epochs, lr=self.lr)
        spe = batches_per_epoch(ctx.batches, cfg.batch_size)
        self.distances_, masks = [], {}
        outer = self

        class _Probe:
            def loss(self, c):
                return None

            def after_step(self, c):
                if (c.step + 1) % spe:
                    return
                new = [topk_mask(s.tensor.detach().abs(), sparsity=outer.sparsity) for s in sites]
                if "prev" in masks:
                    outer.distances_.append(sum(hamming_distance(a, b) * a.numel() for a, b in zip(new, masks["prev"]))
                                            / sum(a.numel() for a in new))
                masks["prev"] = new
                recent = outer.distances_[-outer.window:]
                if len(recent) == outer.window and max(recent) < outer.epsilon:
                    raise _EarlyStop

        try:
            ctx.fit(search, cfg, _Probe())
            self.found_ = False          # never converged: the ticket of the last epoch
        except _EarlyStop:
            self.found_ = True
        self.epoch_ = len(self.distances_) + 1   # epochs trained when the ticket was drawn
        with torch.no_grad():
            for dst, src in zip(model.parameters(), search.parameters()):
                dst.copy_(src)   # continue from the early-bird weights
        self.apply_masks(self.sites_, masks["prev"])
