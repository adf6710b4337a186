"""Structured pruning methods that physically shrink the model.

- channel_prune: remove channels / neurons / hidden units / heads, ranked by an
  importance criterion (l1, l2, taylor, bn_scale, activation, random, or the units a
  group-lasso / L0 / variational-dropout step left dead), per layer or globally, in
  one shot or iteratively with fine-tuning between steps, to a target fraction of
  units, of FLOPs, or of measured batch-64 latency.
- depth_prune: remove whole residual blocks ranked by how little they contribute.

Both shrink in `prepare` (so the fine-tuning that follows trains the smaller model)
and leave plain modules: `finalize` has nothing to bake.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from netshrink.core.context import PrepareContext
from netshrink.core.method import Method
from netshrink.errors import NetshrinkError, RecipeError
from netshrink.structure.graph import DependencyGraph, analyze
from netshrink.structure.importance import scores as importance_scores
from netshrink.structure.select import plan, search
from netshrink.structure.shrink import dead_components, remove_components


def example_input(model: nn.Module, ctx: PrepareContext, batch: int = 2):
    """A small input batch: ctx.extras["example"], or the first samples of ctx.data."""
    ex = (ctx.extras or {}).get("example")
    if ex is not None:
        return ex
    if ctx.data is None:
        raise NetshrinkError("structured pruning needs an example input: pass data, or extras={'example': x}")
    return torch.stack([ctx.data[i][0] for i in range(min(batch, len(ctx.data)))])


def count_units(graph: DependencyGraph) -> int:
    return sum(len(g) for g in graph.groups)


@dataclass
class ChannelPrune(Method):
    """Remove whole channels / neurons / hidden units / heads and shrink the model.

    target: what `amount` is a fraction of: "channels" (prunable units), "flops"
    (of the model's FLOPs), "latency" (of measured batch-64 CPU latency).
    """

    name = "channel_prune"
    summary = "structured pruning: channels/neurons/hidden units/heads by l1/l2/taylor/bn_scale/activation, " \
              "to a unit, FLOPs or latency target; physically shrinks"

    amount: float = 0.5
    target: Literal["channels", "flops", "latency"] = "channels"
    importance: Literal["l1", "l2", "taylor", "bn_scale", "activation", "random", "dead"] = "l1"
    scope: Literal["layer", "global"] = "global"
    steps: int = 1                 # iterative pruning: this many prune → fine-tune rounds
    epochs_between: int = 1        # fine-tuning epochs between rounds (the last round's is the recipe's)
    max_ratio: float = 0.9         # at most this fraction of any one group goes
    round_to: int = 1              # groups keep a multiple of this many units (16 suits AVX-512 conv kernels)
    kinds: list = field(default_factory=list)  # group kinds to prune: channels, hidden, heads, ffn (empty = all)
    batches: int = 8               # calibration batches for taylor / activation / latency
    seed: int = 0

    def validate(self):
        self.check(isinstance(self.amount, (int, float)) and 0.0 <= self.amount < 1.0, "amount", "in [0, 1)")
        self.check(self.target in ("channels", "flops", "latency"), "target", "channels, flops or latency")
        self.check(self.importance in ("l1", "l2", "taylor", "bn_scale", "activation", "random", "dead"),
                   "importance", "one of l1, l2, taylor, bn_scale, activation, random, dead")
        self.check(self.scope in ("layer", "global"), "scope", "layer or global")
        self.check(isinstance(self.steps, int) and self.steps >= 1, "steps", "an integer >= 1")
        self.check(isinstance(self.epochs_between, int) and self.epochs_between >= 0, "epochs_between",
                   "an integer >= 0")
        self.check(0.0 < self.max_ratio < 1.0, "max_ratio", "in (0, 1)")
        self.check(isinstance(self.round_to, int) and self.round_to >= 1, "round_to", "an integer >= 1")
        self.check(all(k in ("channels", "hidden", "heads", "ffn") for k in self.kinds), "kinds",
                   "a list of channels, hidden, heads, ffn")
        self.check(isinstance(self.batches, int) and self.batches >= 1, "batches", "an integer >= 1")

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
        from netshrink.measure.flops import count_flops
        from netshrink.measure.latency import latency_ms

        example = example_input(model, ctx)
        graph = self._graph(model, example)
        self.units_before_ = count_units(graph)
        self.flops_before_ = count_flops(model, example[:1])[0]
        big = torch.cat([example] * 32)[:64] if self.target == "latency" else None
        lat0 = latency_ms(model, big, min_run_time=0.2) if big is not None else None
        self.removed_ = {}
        for step in range(1, self.steps + 1):
            frac = self.amount * step / self.steps  # of the original units / FLOPs / latency
            if step > 1:
                graph = self._graph(model, example)
            if self.importance == "dead":
                p = dead_components(model, graph)
            else:
                s = importance_scores(model, graph, self.importance, data=ctx.data, batches=self.batches,
                                      seed=self.seed)
                if self.target == "channels":
                    # fraction of the original count, expressed on the current (smaller) graph
                    now = count_units(graph)
                    want = max(0.0, (frac * self.units_before_ - (self.units_before_ - now)) / max(now, 1))
                    p = plan(graph, s, min(want, self.max_ratio), scope=self.scope, max_ratio=self.max_ratio,
                             round_to=self.round_to)
                elif self.target == "flops":
                    budget = (1 - frac) * self.flops_before_
                    p, _ = search(model, graph, s, lambda m: count_flops(m, example[:1])[0], budget,
                                  scope=self.scope, max_ratio=self.max_ratio, round_to=self.round_to)
                else:
                    budget = (1 - frac) * lat0
                    p, _ = search(model, graph, s, lambda m: latency_ms(m, big, min_run_time=0.1), budget,
                                  scope=self.scope, max_ratio=self.max_ratio, iters=7, round_to=self.round_to)
            remove_components(model, graph, p)
            for k, v in p.items():
                self.removed_[k] = self.removed_.get(k, 0) + len(v)
            if step < self.steps and ctx.fit is not None and ctx.finetune is not None and self.epochs_between:
                ctx.fit(model, ctx.finetune.replace(epochs=self.epochs_between))
        self.units_after_ = self.units_before_ - sum(self.removed_.values())
        self.flops_after_ = count_flops(model, example[:1])[0]


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
        self.check(isinstance(self.blocks, int) and self.blocks >= 1, "blocks", "an integer >= 1")
        self.check(self.criterion in ("loss", "cosine"), "criterion", "loss or cosine")
        self.check(isinstance(self.batches, int) and self.batches >= 1, "batches", "an integer >= 1")

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        from netshrink.structure.depth import block_scores, candidates, remove_blocks

        example = example_input(model, ctx)
        cands = candidates(model, example)
        if len(cands) < self.blocks:
            raise RecipeError(f"{self.name}: blocks = {self.blocks} but the model has only {len(cands)} removable "
                              f"block(s) ({', '.join(cands) or 'none'})")
        self.scores_ = block_scores(model, cands, ctx.data, criterion=self.criterion, batches=self.batches)
        self.removed_ = sorted(cands, key=lambda p: self.scores_[p])[: self.blocks]
        remove_blocks(model, self.removed_)
