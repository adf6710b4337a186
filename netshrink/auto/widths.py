"""Per-layer channel widths under a latency budget, by the same knapsack as the bytes.

For every prunable group of coupled units (structure.analyze: a conv's output channels,
a linear layer's neurons ...) and every fraction in `FRACTIONS`, the group alone is
pruned by `channel_prune` (l1 importance, that group only, physically shrunk) and we
measure
- the latency of the whole model at the budget's batch size (interleaved with the
  uncompressed model, at the machine speed of its first timing: cost.relative_latency),
- the increase of the run's loss on the calibration batches (a direct loss probe).
A group's cost is its latency minus the least latency of its options (the saving it
leaves untaken), so costs are >= 0 and the knapsack's capacity is the budget minus the
latency with every group at its fastest; latencies are taken as additive over groups
(each option measured with the others whole). The chosen widths are checked by
measuring the shrunk model itself; the capacity shrinks by any excess and the knapsack
runs again, up to 4 times, before any fine-tuning (latency does not depend on the
weights' values). Timings scatter on a shared machine: an option timed slower than a
less pruned one of the same group is taken at that one's latency (removing units never
slows a model down).

The recipe: one `channel_prune` step per pruned group (target = "channels", scope =
"layer", that group's producer as the target), the first ones with no fine-tuning
phase of their own, the last one fine-tuned by the recipe's budget.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

from torch import nn

from netshrink.auto import allocate
from netshrink.auto.cost import relative_latency
from netshrink.auto.sensitivity import Calib, mean_loss
from netshrink.core.targets import Targets
from netshrink.errors import NetshrinkError
from netshrink.pipeline.compress import compress_
from netshrink.pipeline.recipe import Recipe, Step
from netshrink.pipeline.registry import create
from netshrink.structure import analyze

FRACTIONS = (0.0, 0.25, 0.5, 0.625, 0.75, 0.875)   # of a group's units removed


@dataclass
class WidthTable:
    """One group (named by its first producer module): fractions removed, the measured
    latency (ms) and loss increase of each."""

    name: str
    units: int
    fractions: list[float]
    latency: list[float]
    loss: list[float]


def groups(model: nn.Module, example) -> list[tuple[str, int]]:
    """(producer module, units) of every prunable group, in graph order."""
    out, seen = [], set()
    for g in analyze(model, example).groups:
        name = g.components[0].producers[0][0]
        if name not in seen:
            seen.add(name)
            out.append((name, len(g)))
    return out


def prune_step(name: str, fraction: float, finetune: dict | None = None) -> Step:
    return Step(create("channel_prune", sparsity=fraction, target="channels", scope="layer", importance="l1",
                       max_sparsity=fraction, targets=Targets(include=[f"{name}.weight"])), finetune)


def _shrunk(base: nn.Module, steps: list[Step], data, cfg, loss) -> nn.Module:
    """`base` shrunk by `steps`, no fine-tuning (the widths' latency and one-shot loss)."""
    net = copy.deepcopy(base)
    compress_(net, Recipe(steps, cfg.replace(epochs=0)), data=data, progress=False, loss=loss)
    return net


def probe_widths(base: nn.Module, data, calib: Calib, example, base_ms: float, cfg, loss=None,
                 fractions=FRACTIONS, log=None) -> list[WidthTable]:
    base_loss = mean_loss(base, calib)
    tables = []
    for name, units in groups(base, example):
        fr = sorted({f for f in fractions if f == 0.0 or int(round(f * units)) >= 1})
        lat, dmg = [], []
        for f in fr:
            if f == 0.0:                   # the group whole: the model as given
                lat.append(base_ms)
                dmg.append(0.0)
                continue
            net = _shrunk(base, [prune_step(name, f)], data, cfg, loss)
            # Removing more units never makes the model slower: a timing above a less pruned
            # option's is the shared machine's scatter, and is taken at that option's value.
            lat.append(min(relative_latency(net, base, example, reference_ms=base_ms), lat[-1]))
            dmg.append(mean_loss(net, calib) - base_loss)
        if log:
            log(f"widths {name} ({units} units): " + ", ".join(f"-{100 * f:g}%: {ms:.3f} ms / {d:+.3f}"
                                                              for f, ms, d in zip(fr, lat, dmg)))
        tables.append(WidthTable(name, units, fr, lat, dmg))
    return tables


def allocate_widths(tables: list[WidthTable], base_ms: float, aim_ms: float) -> list[int] | None:
    """Option index per group: least total loss increase with the additive latency
    estimate base + sum(latency_g - base) within `aim_ms`; None if out of reach."""
    lo = [min(t.latency) for t in tables]
    costs = [[ms - m for ms in t.latency] for t, m in zip(tables, lo)]
    capacity = aim_ms - (base_ms + sum(m - base_ms for m in lo))
    return allocate.knapsack(costs, [t.loss for t in tables], capacity) if capacity >= 0 else None


def structured_to_latency(base: nn.Module, data, calib: Calib, example, base_ms: float, budget_ms: float,
                          aim: float, cfg, loss=None, fractions=FRACTIONS, log=None
                          ) -> tuple[nn.Module, list[Step], dict]:
    """(model shrunk to the latency budget and fine-tuned, its recipe steps, {group: fraction})."""
    log = log or (lambda msg: None)
    tables = probe_widths(base, data, calib, example, base_ms, cfg, loss, fractions, log=log)
    aim_ms = aim * budget_ms
    room = aim_ms                          # the knapsack's latency target, lowered by any measured excess
    picks, widths = None, {}
    for _ in range(4):
        picks = allocate_widths(tables, base_ms, room)
        if picks is None:
            fastest = base_ms + sum(min(t.latency) - base_ms for t in tables)
            raise NetshrinkError(f"latency budget {budget_ms:g} ms cannot be met by channel pruning: removing "
                                 f"{100 * max(fractions):g} % of every group's units is estimated at "
                                 f"{fastest:.3f} ms (the model takes {base_ms:.3f} ms)")
        widths = {t.name: t.fractions[i] for t, i in zip(tables, picks) if t.fractions[i] > 0}
        steps = [prune_step(n, f) for n, f in widths.items()]
        ms = relative_latency(_shrunk(base, steps, data, cfg, loss), base, example, reference_ms=base_ms) \
            if steps else base_ms
        log(f"widths {widths}: {ms:.3f} ms (aim {aim_ms:.3f} ms, budget {budget_ms:.3f} ms)")
        if ms <= aim_ms:
            break
        room -= ms - aim_ms
    steps = [prune_step(n, f, {"epochs": 0} if i < len(widths) - 1 else None)
             for i, (n, f) in enumerate(widths.items())]
    net = copy.deepcopy(base)
    if steps:
        compress_(net, Recipe(steps, cfg), data=data, progress=False, loss=loss)
    return net, steps, widths
