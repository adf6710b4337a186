"""Structured pruning methods that physically shrink the model.

- channel_prune: remove channels / neurons / hidden units / heads, ranked by an
  importance criterion (l1, l2, taylor, bn_scale, activation, random, or the units a
  group-lasso / L0 / variational-dropout step left dead), per layer or globally, in
  one shot or iteratively with fine-tuning between rounds, removing a fraction
  `sparsity` of the units, of the FLOPs, or of measured batch-64 latency; with
  importance "obs" and reconstruct, data-aware ZipLM-style pruning (OBS saliency,
  greedy chunks, least-squares re-fit of the consumers).
- depth_prune: remove `blocks` whole residual blocks ranked by how little they contribute.

Both shrink in `prepare` (so the fine-tuning that follows trains the smaller model)
and leave plain modules: `finalize` has nothing to bake.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from netshrink.core.batches import Inputs, as_batches, model_device, model_dtype
from netshrink.core.context import PrepareContext
from netshrink.core.method import Method
from netshrink.errors import NetshrinkError, RecipeError
from netshrink.measure.flops import count_flops
from netshrink.measure.latency import latency_ms
from netshrink.structure.depth_pruning import block_scores, candidates, remove_blocks
from netshrink.structure.graph import DependencyGraph, analyze
from netshrink.structure.importance import importance_names, obs_importance
from netshrink.structure.importance import scores as importance_scores
from netshrink.structure.reconstruct import consumer_stats, greedy, refit
from netshrink.structure.select import plan, search
from netshrink.structure.shrink import check_runs, dead_components, output_shapes, remove_components
from netshrink.structure.tracer import example_inputs
from netshrink.train.losses import BatchLoss


def example_input(model: nn.Module, ctx: PrepareContext, batch: int = 2):
    """A small input batch: ctx.extras["example"], or the first samples of ctx.data."""
    ex = (ctx.extras or {}).get("example")
    if ex is not None:
        return ex
    if ctx.data is None:
        raise NetshrinkError("structured pruning needs an example input: pass data, or extras={'example': x}")
    ex = as_batches(ctx.data).example_inputs(batch)   # core.batches.Inputs of `batch` samples
    ex = ex.to(model_device(model), model_dtype(model))  # traced where and as the model computes
    if not ex.kwargs and len(ex.args) == 1:
        return ex.args[0]
    return ex if ex.kwargs else ex.args


def _tile(ex: Inputs, n: int = 64) -> Inputs:
    """The example's samples repeated 32 times, at most `n` of them (latency is timed at 64)."""
    def rep(t):
        return torch.cat([t] * 32)[:n] if isinstance(t, torch.Tensor) and t.dim() else t
    return Inputs(tuple(rep(a) for a in ex.args), {k: rep(v) for k, v in ex.kwargs.items()})


def count_units(graph: DependencyGraph) -> int:
    return sum(len(g) for g in graph.groups)


@dataclass
class ChannelPrune(Method):
    """Remove whole channels / neurons / hidden units / heads and shrink the model.

    sparsity: the fraction removed, of what `target` says: "channels" (prunable
    units), "flops" (the model's FLOPs), "latency" (measured batch-64 CPU latency).

    importance = "obs" and reconstruct = true: ZipLM (Kurtic, Frantar, Alistarh 2023,
    "ZipLM: Inference-Aware Structured Pruning of Language Models"; the closed form of
    Optimal Brain Compression / SlimGPT). For every Linear reading the units, H = sum of
    x x^T over the calibration tokens of its input plus a constant-1 channel (collected
    before any removal, float64, padding left out), + damp * mean(diag H) * I; a unit
    whose input columns are M costs sum_rows w_M^T ((H^-1)_MM)^-1 w_M (keep the
    highest). After the plan, the kept columns K (and the ones channel, which becomes
    the bias; a Linear without bias has none) are re-solved by least squares,
    W'_K = (W H[:, K]) H[K, K]^-1. Units are chosen greedily in `obs_steps` chunks: each
    chunk's saliencies come from the sub-matrix H[K, K] and the re-fit W'_K of the
    previous chunks (no new calibration pass); the number removed per group is the
    one-shot plan's (so a global / FLOPs / latency allocation is kept). Only Linear
    consumers are updated: conv, LSTM, LayerNorm consumers stay as they are, and groups
    no Linear reads are ranked by l2. reconstruct works with any importance (no greedy
    chunks then). The calibration data: the first `batches` batches of ctx.data.
    """

    name = "channel_prune"
    summary = "structured pruning: channels/neurons/hidden units/heads by l1/l2/taylor/bn_scale/activation/obs, " \
              "to a unit, FLOPs or latency target, optional least-squares re-fit (ZipLM); physically shrinks"

    sparsity: float = 0.5
    target: Literal["channels", "flops", "latency"] = "channels"
    importance: str = "l1"         # a registered criterion (structure.importance), or "dead"
    scope: Literal["layer", "global"] = "layer"
    rounds: int = 1                # iterative pruning: this many prune → fine-tune rounds
    epochs_between: int = 1        # fine-tuning epochs between rounds (the last round's is the recipe's)
    max_sparsity: float = 0.9      # at most this fraction of any one group goes
    round_to: int = 1              # groups keep a multiple of this many units (16 suits AVX-512 conv kernels)
    kinds: tuple[Literal["channels", "hidden", "heads", "ffn"], ...] = ()  # group kinds to prune (empty = all)
    batches: int = 8               # calibration batches for taylor / activation / obs / reconstruct
    seed: int = 0
    reconstruct: bool = False      # least-squares re-fit of the Linear consumers of removed units
    damp: float = 0.01             # obs / reconstruct: H += damp * mean(diag H) * I (GPTQ's default)
    obs_steps: int = 4             # obs + reconstruct: greedy chunks of the removal

    renamed: ClassVar[dict[str, str]] = {
        "amount": "'sparsity' (the fraction removed)", "steps": "'rounds'", "max_ratio": "'max_sparsity'"}

    def validate(self):
        self.check(0.0 <= self.sparsity < 1.0, "sparsity", "in [0, 1)")
        names = importance_names() + ("dead",)  # users' criteria register at run time: no Literal
        self.check(self.importance in names, "importance", "one of " + ", ".join(names))
        self.check(self.rounds >= 1, "rounds", "an integer >= 1")
        self.check(self.epochs_between >= 0, "epochs_between", "an integer >= 0")
        self.check(0.0 < self.max_sparsity < 1.0, "max_sparsity", "in (0, 1)")
        self.check(self.round_to >= 1, "round_to", "an integer >= 1")
        self.check(self.batches >= 1, "batches", "an integer >= 1")
        self.check(self.damp >= 0.0, "damp", ">= 0")
        self.check(self.obs_steps >= 1, "obs_steps", "an integer >= 1")

    def _graph(self, model, example) -> DependencyGraph:
        g = analyze(model, example)
        if self.kinds:
            g.groups = [grp for grp in g.groups if grp.kind in self.kinds]
        if self.targets.include or self.targets.exclude:
            chosen = {s.module_name for s in self.sites(model)}  # a group goes if one producer is chosen
            g.groups = [grp for grp in g.groups if any(p[0] in chosen for p in grp.components[0].producers)]
        if not g.groups:
            raise NetshrinkError(f"{self.name}: the model has no prunable groups"
                                 + ("" if g.traced else " (torch.fx could not trace it)"))
        return g

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        if (self.reconstruct or self.importance == "obs") and ctx.data is None:
            what = "reconstruct = true" if self.reconstruct else "importance = 'obs'"
            raise RecipeError(f"{self.name}: {what} needs calibration data (compress_(model, recipe, data=...)): "
                              "the consumers' input Hessians come from it")
        example = example_input(model, ctx)
        one = example_inputs(example).take(1)  # FLOPs of one sample
        graph = self._graph(model, example)
        shapes = output_shapes(model, example)
        self.units_before_ = count_units(graph)
        self.flops_before_ = count_flops(model, one)[0]
        big = _tile(example_inputs(example), 64) if self.target == "latency" else None
        lat0 = latency_ms(model, big, min_run_time=0.2) if big is not None else None
        self.removed_ = {}
        for step in range(1, self.rounds + 1):
            frac = self.sparsity * step / self.rounds  # of the original units / FLOPs / latency
            if step > 1:
                graph = self._graph(model, example)
            # the consumers' input Hessians, before this round removes anything
            stats = consumer_stats(model, graph, ctx.data, self.batches) \
                if self.reconstruct or self.importance == "obs" else None
            if self.importance == "dead":
                p = dead_components(model, graph)
            else:
                if self.importance == "obs":   # the same scores as the registry's, from the pass above
                    s = obs_importance(model, graph, stats, damp=self.damp)
                else:
                    s = importance_scores(model, graph, self.importance, data=ctx.data, batches=self.batches,
                                          seed=self.seed,
                                          loss=BatchLoss.of_context(ctx, f"{self.name} ({self.importance})"))
                if self.target == "channels":
                    # fraction of the original count, expressed on the current (smaller) graph
                    now = count_units(graph)
                    want = max(0.0, (frac * self.units_before_ - (self.units_before_ - now)) / max(now, 1))
                    p = plan(graph, s, min(want, self.max_sparsity), scope=self.scope,
                             max_ratio=self.max_sparsity, round_to=self.round_to)
                elif self.target == "flops":
                    budget = (1 - frac) * self.flops_before_
                    p, _ = search(model, graph, s, lambda m: count_flops(m, one)[0], budget,
                                  scope=self.scope, max_ratio=self.max_sparsity, round_to=self.round_to)
                else:
                    budget = (1 - frac) * lat0
                    p, _ = search(model, graph, s, lambda m: latency_ms(m, big, min_run_time=0.1), budget,
                                  scope=self.scope, max_ratio=self.max_sparsity, iters=7, round_to=self.round_to)
                if self.importance == "obs" and self.reconstruct and self.obs_steps > 1:
                    p = greedy(model, graph, stats, p, steps=self.obs_steps, damp=self.damp)
            if self.reconstruct:
                self.refitted_ = refit(model, graph, stats, p, damp=self.damp)
            remove_components(model, graph, p)
            check_runs(model, example, shapes)  # a dependency the analysis missed: one clear error, not a broken model
            for k, v in p.items():
                self.removed_[k] = self.removed_.get(k, 0) + len(v)
            if step < self.rounds and ctx.fit is not None and ctx.finetune is not None and self.epochs_between:
                ctx.fit(model, ctx.finetune.replace(epochs=self.epochs_between))
        self.units_after_ = self.units_before_ - sum(self.removed_.values())
        self.flops_after_ = count_flops(model, one)[0]


@dataclass
class DepthPrune(Method):
    """Remove the `blocks` residual blocks / layers that contribute least."""

    name = "depth_prune"
    summary = "depth pruning: remove whole residual blocks ranked by loss increase (lesion) or " \
              "block influence (1 - cos), then fine-tune"

    blocks: int = 1
    criterion: Literal["loss", "cosine"] = "loss"
    batches: int = 8

    def validate(self):
        self.check(self.blocks >= 1, "blocks", "an integer >= 1")
        self.check(self.batches >= 1, "batches", "an integer >= 1")

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        example = example_input(model, ctx)
        cands = candidates(model, example)
        if len(cands) < self.blocks:
            raise RecipeError(f"{self.name}: blocks = {self.blocks} but the model has only {len(cands)} removable "
                              f"block(s) ({', '.join(cands) or 'none'})")
        self.scores_ = block_scores(model, cands, ctx.data, criterion=self.criterion, batches=self.batches,
                                    loss=BatchLoss.of_context(ctx, self.name))
        self.removed_ = sorted(cands, key=lambda p: self.scores_[p])[: self.blocks]
        remove_blocks(model, self.removed_)
