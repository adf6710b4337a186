"""Sparsity by regularisation: l1, group lasso (Scardapane et al. 2016) and DropNeuron
(Pan et al. 2016).

Each penalty is added to the loss through `loss(ctx)`; with `prox = true` the
penalty's proximal operator is applied after every optimiser step instead, with
threshold = current lr x lambda, which leaves exact zeros. `finalize` zeroes groups
(or weights) whose norm is at most `tol` and records which units died:

    dead_units_  = {layer: bool over its output units (rows / filters / hidden units)}
    dead_inputs_ = {layer: bool over its input features (columns / input channels)}

(layer = module name; for LSTM/GRU weights, the parameter's name), so that structured
shrinking can remove them physically.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from netshrink.core.context import PrepareContext, StepContext
from netshrink.core.method import Method
from netshrink.core.reparam import original
from netshrink.core.targets import Site
from netshrink.errors import RecipeError, TargetError
from netshrink.functional.groups import RNN_GATES, dead_groups, expand, group_norms, group_size
from netshrink.functional.prox import group_soft_threshold, soft_threshold

GROUP_KINDS = ("linear", "conv", "recurrent")


def site_gates(site: Site) -> int:
    """Gates stacked in dim 0 of a recurrent weight (4 LSTM, 3 GRU), else 1."""
    if site.kind == "recurrent" and site.param_name.startswith("weight"):
        return RNN_GATES[type(site.module).__name__]
    return 1


def unit_key(site: Site) -> str:
    return site.module_name if site.param_name == "weight" else site.name


def current_lr(ctx: StepContext, default: float) -> float:
    """The learning rate the optimiser just used (the trainer's schedule sets it per step)."""
    if ctx.optimizer is not None and ctx.optimizer.param_groups:
        return float(ctx.optimizer.param_groups[0]["lr"])
    return default


def record_dead(sites: list[Site]) -> tuple[dict, dict]:
    """(dead_units_, dead_inputs_) of the sites' current weights."""
    out, inp = {}, {}
    for s in sites:
        w = s.tensor.detach()
        if w.dim() < 2:
            continue
        g = site_gates(s)
        out[unit_key(s)] = dead_groups(w, direction="out", gates=g)
        inp[unit_key(s)] = dead_groups(w, direction="in")
    return out, inp


@dataclass
class _Regulariser(Method):
    """Shared plumbing: weight sites of Linear / Conv / LSTM / GRU layers."""

    prox: bool = False
    # At finalize, groups (or weights) with norm <= tol are set exactly to zero.
    tol: float = 0.0
    # lr used for the prox threshold when no optimiser is visible (a user's loop).
    lr: float = 1e-3

    def validate(self):
        self.check(self.tol >= 0, "tol", ">= 0")
        self.check(self.lr > 0, "lr", "> 0")

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self.sites_ = [s for s in self.sites(model) if s.tensor.dim() >= 2]
        bad = [s.name for s in self.sites_ if s.kind not in GROUP_KINDS]
        if bad or not self.sites_:
            raise TargetError(f"{self.name}: needs Linear, Conv, LSTM or GRU weights; got {bad or 'none'}")

    def _weights(self):
        for s in self.sites_:
            # The trainable tensor: the Parameter itself, or the original underneath an
            # earlier step's re-parametrisation (e.g. a pruning mask).
            if parametrize.is_parametrized(s.module, s.param_name):
                yield s, original(s.module, s.param_name)
            else:
                yield s, getattr(s.module, s.param_name)

    def finalize(self, model: nn.Module) -> None:
        with torch.no_grad():
            for s, w in self._weights():
                self.zero_small(s, w)
        self.dead_units_, self.dead_inputs_ = record_dead(self.sites_)

    def zero_small(self, site: Site, w: torch.Tensor) -> None:
        raise NotImplementedError

    # Each regulariser is a penalty and its proximal map; with `prox` the penalty acts
    # only through the proximal step after each optimiser step (exact zeros).
    def penalty(self, site: Site, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def prox_step(self, site: Site, w: torch.Tensor, lr: float) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, ctx: StepContext):
        if self.prox:
            return None
        return torch.stack([self.penalty(s, w) for s, w in self._weights()]).sum()

    @torch.no_grad()
    def after_step(self, ctx: StepContext) -> None:
        if not self.prox:
            return
        lr = current_lr(ctx, self.lr)
        for s, w in self._weights():
            w.copy_(self.prox_step(s, w, lr))


@dataclass
class L1(_Regulariser):
    """lam * sum |w| (or its prox, soft thresholding); unstructured sparsity."""

    name = "l1"
    summary = "l1 penalty lam*sum|w| or its proximal step (soft thresholding, exact zeros)"
    lam: float = 1e-4

    def validate(self):
        super().validate()
        self.check(self.lam >= 0, "lam", ">= 0")

    def penalty(self, site, w):
        return self.lam * w.abs().sum()

    def prox_step(self, site, w, lr):
        return soft_threshold(w, t=lr * self.lam)

    def zero_small(self, site, w):
        w.masked_fill_(w.abs() <= self.tol, 0.0)


@dataclass
class GroupLasso(_Regulariser):
    """Group lasso, lam * sum_g sqrt(|g|) ||w_g||_2 (+ l1 * ||w||_1: sparse group lasso).

    group = "input": one group per input of the layer -- a column of a Linear or LSTM
    weight, an input channel of a conv: the outgoing weights of the unit that feeds it
    (Scardapane et al.'s choice, which kills input features and hidden units);
    "output": one group per output unit of the layer -- a row, a conv filter, an LSTM
    hidden unit across its gates (the unit's incoming weights).
    """

    name = "group_lasso"
    summary = "group lasso on neurons / filters / features / LSTM units (Scardapane 2016), optional l1 and prox"
    lam: float = 1e-4
    l1: float = 0.0
    group: Literal["input", "output"] = "input"
    prox: bool = True

    def __post_init__(self):
        # The old choices said whose weights a group holds, not which unit it is.
        old = {"outgoing": "input", "incoming": "output"}
        if self.group in old:
            raise RecipeError(f"{self.name}: group = {self.group!r} is not one of ['input', 'output'] "
                              f"({self.group!r} is now {old[self.group]!r})")
        super().__post_init__()

    def validate(self):
        super().validate()
        self.check(self.lam >= 0, "lam", ">= 0")
        self.check(self.l1 >= 0, "l1", ">= 0")

    @property
    def direction(self) -> str:
        """functional.groups' name of the group's axis: "in" = columns, "out" = rows."""
        return "in" if self.group == "input" else "out"

    def _gates(self, s: Site) -> int:
        return site_gates(s) if self.direction == "out" else 1

    def _weight(self, s: Site, w) -> float:
        """sqrt(|g|): Scardapane et al.'s per-group weight, so big groups pay more."""
        return math.sqrt(group_size(w.shape, direction=self.direction, gates=self._gates(s)))

    def penalty(self, s, w):
        norms = group_norms(w, direction=self.direction, gates=self._gates(s))  # (G,)
        return self.lam * self._weight(s, w) * norms.sum() + self.l1 * w.abs().sum()

    def prox_step(self, s, w, lr):
        v = soft_threshold(w, t=lr * self.l1) if self.l1 else w
        return group_soft_threshold(v, t=lr * self.lam * self._weight(s, w), direction=self.direction,
                                    gates=self._gates(s))

    def zero_small(self, site, w):
        g = self._gates(site)
        dead = group_norms(w, direction=self.direction, gates=g) <= self.tol
        w.mul_(expand((~dead).to(w.dtype), w.shape, direction=self.direction, gates=g))


@dataclass
class DropNeuron(_Regulariser):
    """Pan et al.'s neuron regularisers, named by group as in group_lasso:
    lam_output * sum_i ||w_i||_2 over the output units i (rows / filters / LSTM units:
    each unit's incoming weights, Pan's "li") + lam_input * sum_j ||w_j||_2 over the
    inputs j (columns / input channels: each feeding unit's outgoing weights, Pan's
    "lo"), over every target layer, plus optional l1. With prox, the two group prox
    steps are applied one after the other (the groups overlap, so this is the usual
    approximation of the joint prox)."""

    name = "dropneuron"
    summary = "DropNeuron (Pan 2016): penalties on each neuron's incoming and outgoing weights"
    lam_output: float = 1e-4
    lam_input: float = 1e-4
    l1: float = 0.0

    renamed: ClassVar[dict[str, str]] = {
        "lam_in": "'lam_output' (groups of output units: each unit's incoming weights)",
        "lam_out": "'lam_input' (groups of inputs: each feeding unit's outgoing weights)"}

    def validate(self):
        super().validate()
        for f in ("lam_output", "lam_input", "l1"):
            self.check(getattr(self, f) >= 0, f, ">= 0")

    def penalty(self, s, w):
        return (self.lam_output * group_norms(w, direction="out", gates=site_gates(s)).sum()
                + self.lam_input * group_norms(w, direction="in").sum() + self.l1 * w.abs().sum())

    def prox_step(self, s, w, lr):
        v = soft_threshold(w, t=lr * self.l1) if self.l1 else w
        v = group_soft_threshold(v, t=lr * self.lam_output, direction="out", gates=site_gates(s))
        return group_soft_threshold(v, t=lr * self.lam_input, direction="in")

    def zero_small(self, site, w):
        g = site_gates(site)
        dead_out = group_norms(w, direction="out", gates=g) <= self.tol
        w.mul_(expand((~dead_out).to(w.dtype), w.shape, direction="out", gates=g))
        dead_in = group_norms(w, direction="in") <= self.tol
        w.mul_(expand((~dead_in).to(w.dtype), w.shape, direction="in"))
