"""Unstructured pruning by score: magnitude (Han et al. 2015; layer-wise or global,
Blalock et al. 2020), random (the baseline every table needs) and gradual magnitude
(Zhu & Gupta 2017's cubic schedule, on Linear, Conv and recurrent weights alike, as
Narang et al. 2017 prune RNNs).

Scores become boolean masks attached as `Mask` re-parametrisations, so fine-tuning
keeps pruned weights exactly zero; `finalize` bakes them into plain weights and then
swaps each pruned Linear (Conv2d) for a CSR `SparseLinear` (`SparseConv2d`) where that
pays by a rule of its sparsity and size at the expected batch (`runtime`, `timing_batch`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Literal

import torch
from torch import nn

from netshrink.core.batches import as_batches
from netshrink.core.context import PrepareContext, StepContext
from netshrink.core.method import Method
from netshrink.core.reparam import attach, bake, reparams_of
from netshrink.core.targets import PerLayer, Site
from netshrink.errors import RecipeError
from netshrink.functional.prune import global_masks, topk_mask
from netshrink.functional.schedule import cubic_sparsity, is_update_step
from netshrink.reparams.mask import Mask
from netshrink.runtime.sparsify import sparsify_


def keep_zeros(param: torch.Tensor) -> None:
    """After baking, keep the pruned entries of `param` at zero through the training
    phases of later recipe steps: their gradient is masked (with a zero gradient from
    the start of a phase, SGD, Adam and weight decay all leave a zero at zero).
    The hook lives on the Parameter: copy.deepcopy of the model does not carry it."""
    if not isinstance(param, nn.Parameter) or not param.requires_grad:
        return
    keep = param.detach() != 0
    if bool(keep.all()):
        return
    param.register_hook(lambda g: g * keep)


@dataclass
class MaskPruning(Method):
    """Base of every mask-based pruning method: attaching masks, and the finish
    (bake + the sparse runtime's choice)."""

    # "auto": a pruned Linear becomes a CSR SparseLinear where the rule of
    # runtime/sparsify.py (sparsity, and the layer's work at `timing_batch` rows per
    # call: the batch it will serve, not a training batch) says CSR is faster; "sparse":
    # always; "dense": never (masks baked into dense weights). The swap happens in
    # `deploy`, after every later recipe step has finished.
    runtime: Literal["auto", "dense", "sparse"] = "auto"
    timing_batch: int = 64

    renamed: ClassVar[dict[str, str]] = {
        "batch_size": "'timing_batch' (the batch size the sparse runtime is timed at)"}

    def validate(self):
        self.check(self.timing_batch >= 1, "timing_batch", "an integer >= 1")

    def mask_of(self, site: Site) -> Mask | None:
        found = [rp for rp in reparams_of(site.module, site.param_name) if isinstance(rp, Mask)]
        return found[0] if found else None

    @torch.no_grad()
    def apply_masks(self, sites: list[Site], masks: list[torch.Tensor]) -> None:
        """Attach (or narrow) each site's Mask; a weight pruned before stays pruned."""
        for site, mask in zip(sites, masks):
            existing = self.mask_of(site)
            if existing is not None:
                existing.set(existing.mask & mask)
            else:
                attach(site, Mask(mask & (site.tensor != 0)))

    def remember_input(self, ctx: PrepareContext) -> None:
        """One input's shape (from the data), so that finalize can time convolutions."""
        self.input_shape_ = None
        if ctx.data is not None:
            ex = as_batches(ctx.data).example_inputs(1)
            if len(ex.args) == 1 and not ex.kwargs:   # one tensor input: its shape without the batch
                self.input_shape_ = tuple(ex.args[0].shape[1:])

    def finalize(self, model: nn.Module) -> None:
        for site in self.sites_:
            bake(site.module, site.param_name, Mask)
            keep_zeros(getattr(site.module, site.param_name))

    def deploy(self, model: nn.Module) -> None:
        """The sparse runtime's choice (a rule: nothing timed), once every recipe step is done
        (a later k-means / quantization step still saw plain Linears)."""
        names = dict(model.named_modules())
        layers = [s.module_name for s in self.sites_
                  if s.param_name == "weight" and type(names.get(s.module_name)) in (nn.Linear, nn.Conv2d)]
        self.runtime_ = sparsify_(model, layers, runtime=self.runtime, batch_size=self.timing_batch,
                                  example_shape=getattr(self, "input_shape_", None))


@dataclass
class ScorePruning(MaskPruning):
    """Base of one-shot score pruning: subclasses define `scores`."""

    sparsity: float = 0.9
    scope: Literal["layer", "global"] = "layer"
    # Global scope: no layer loses more than this fraction of its weights.
    max_sparsity: float = 1.0
    # Per-layer sparsity by target pattern; overrides `sparsity` (and makes the scope layer-wise).
    per_layer: PerLayer[float] = field(default_factory=PerLayer)

    renamed: ClassVar[dict[str, str]] = {
        **MaskPruning.renamed, "sparsity_map": "'per_layer' (the same table)",
        "min_keep": "'max_sparsity' (= 1 - min_keep: the most any one layer loses)"}

    def validate(self):
        super().validate()
        self.check(0.0 <= self.sparsity < 1.0, "sparsity", "in [0, 1)")
        self.check(0.0 <= self.max_sparsity <= 1.0, "max_sparsity", "in [0, 1]")
        bad = {k: v for k, v in self.per_layer.items() if not 0 <= v < 1}
        self.check(not bad, "per_layer", f"a table of sparsities in [0, 1) (not {bad})")

    def scores(self, sites: list[Site], model: nn.Module, ctx: PrepareContext) -> list[torch.Tensor]:
        raise NotImplementedError

    def layer_sparsities(self, sites: list[Site]) -> list[float]:
        """Each site's final sparsity: its `per_layer` entry, else `sparsity` (a
        per_layer pattern that matches none of the sites is a TargetError)."""
        return self.per_layer.resolve(sites, self.sparsity, owner=self.name)

    def masks(self, sites, scores, at: Callable[[float], float] = lambda s: s) -> list[torch.Tensor]:
        """Masks at sparsity `at(final)` (identity for one-shot; the schedule for gradual)."""
        if self.scope == "global" and not self.per_layer:
            return global_masks(scores, sparsity=at(self.sparsity), max_sparsity=self.max_sparsity)
        return [topk_mask(s, sparsity=at(f)) for f, s in zip(self.layer_sparsities(sites), scores)]

    @torch.no_grad()
    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self.sites_ = self.sites(model)
        self.remember_input(ctx)
        scores = self.scores(self.sites_, model, ctx)
        self.apply_masks(self.sites_, self.masks(self.sites_, scores))


@dataclass
class Magnitude(ScorePruning):
    """Prune the smallest |w|, per layer or with one global threshold.

    >>> ns.create("magnitude", sparsity=0.9, scope="global", max_sparsity=0.98)
    """

    name = "magnitude"
    summary = "magnitude pruning |w| (Han et al. 2015), layer-wise or global, target sparsity"

    def scores(self, sites, model, ctx):
        return [site.tensor.detach().abs() for site in sites]


@dataclass
class RandomPrune(ScorePruning):
    """Prune uniformly at random: the baseline every pruning table needs."""

    name = "random"
    summary = "random unstructured pruning at the target sparsity (the baseline)"
    seed: int = 0

    def scores(self, sites, model, ctx):
        g = torch.Generator().manual_seed(self.seed)
        return [torch.rand(site.tensor.shape, generator=g) for site in sites]


@dataclass
class GradualMagnitude(ScorePruning):
    """Zhu & Gupta 2017: during fine-tuning, every `frequency` steps from `start_step`
    to `end_step`, prune the smallest-magnitude weights up to the cubic schedule
    s_t = s_f + (s_i - s_f)(1 - (t - t0)/(n dt))^3; pruned weights stay zero.
    `end_step = -1` ends the ramp at 3/4 of the phase, leaving the last quarter to recover.

    >>> ns.create("gradual_magnitude", sparsity=0.95, initial_sparsity=0.0, frequency=100)
    """

    name = "gradual_magnitude"
    summary = "gradual magnitude pruning on Zhu & Gupta's cubic schedule (Linear, Conv, LSTM/GRU)"
    initial_sparsity: float = 0.0
    start_step: int = 0
    end_step: int = -1
    frequency: int = 100

    def validate(self):
        super().validate()
        self.check(0.0 <= self.initial_sparsity <= self.sparsity, "initial_sparsity", "in [0, sparsity]")
        self.check(self.start_step >= 0, "start_step", "an integer >= 0")
        self.check(self.end_step == -1 or self.end_step > self.start_step,
                   "end_step", "-1 (3/4 of the phase) or an integer > start_step")
        self.check(self.frequency >= 1, "frequency", "an integer >= 1")

    def scores(self, sites, model, ctx):
        return [site.tensor.detach().abs() for site in sites]

    def sparsity_at(self, step: int, final: float) -> float:
        # The schedule of a layer whose final sparsity is `final` (per_layer); the
        # initial sparsity scales with it.
        s_i = self.initial_sparsity * (final / self.sparsity if self.sparsity else 0.0)
        return cubic_sparsity(step, initial=s_i, final=final, start=self.start_step, end=self.end_,
                              frequency=self.frequency)

    @torch.no_grad()
    def _update(self, step: int) -> None:
        scores = [s.tensor.detach().abs() for s in self.sites_]   # masked weights: pruned score 0
        self.apply_masks(self.sites_, self.masks(self.sites_, scores, at=lambda f: self.sparsity_at(step, f)))

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self.sites_ = self.sites(model)
        self.remember_input(ctx)
        if self.end_step == -1:
            if not ctx.steps_total:
                raise RecipeError("gradual_magnitude: the number of training steps is unknown here; set end_step")
            self.end_ = max(self.start_step + 1, (3 * ctx.steps_total) // 4)
        else:
            self.end_ = self.end_step
        self.apply_masks(self.sites_, [torch.ones_like(s.tensor, dtype=torch.bool) for s in self.sites_])
        if self.start_step == 0:
            self._update(0)

    def after_step(self, ctx: StepContext) -> None:
        t = ctx.step + 1   # optimiser steps taken, this one included
        if is_update_step(t, start=self.start_step, end=self.end_, frequency=self.frequency):
            self._update(t)

    def finalize(self, model: nn.Module) -> None:
        # A phase shorter than the schedule still ends at the target (said in the docs).
        self._update(max(self.end_, self.start_step))
        super().finalize(model)
