"""Dependency analysis: which tensor slices must shrink together.

The model is traced with torch.fx and run once on an example input. Every tensor
carries a *label*: for each index of its channel dimension, the id of the "unit"
(an output channel / neuron / hidden unit) that index belongs to. A producer
(Conv, Linear, LSTM, Embedding) creates new units; consumers record the weight
columns each unit feeds ("slots"); element-wise ops pass labels through; a
residual addition unifies its operands' units index by index; concatenation joins
labels (so offsets come for free); flatten repeats a channel's unit over the
spatial positions it spreads to. Units are merged with union-find; a merged unit
(a *component*) is removed as a whole. Units that reach the model's input or
output, or that an op couples in ways a removal would change (LayerNorm, grouped
conv, softmax over channels), are pinned.

Blocks whose inside is analysed by rule rather than traced (Hugging Face BERT
layers, nn.TransformerEncoderLayer, nn.MultiheadAttention) are opaque leaves: their
inputs and outputs are pinned, their internal groups (heads, FFN neurons) are
closed (every slot inside the block) and come from `netshrink.structure.blocks`.

Anything the analysis does not know raises a NetshrinkError naming the module and
the op, so a shrink is never silently wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from netshrink.errors import NetshrinkError
from netshrink.structure import ops
from netshrink.structure.blocks import block_groups, block_producer_dims
from netshrink.structure.tracer import trace

# A slot: one index of one dimension of one parameter/buffer: (module, param, dim, pos).
Slot = tuple[str, str, int, int]


@dataclass
class Component:
    """Coupled units removed together. slots: every (module, param, dim, pos) that
    goes with it; role of a slot: "out" (producer rows), "norm" (BatchNorm), "in"."""

    slots: list[tuple[Slot, str]]
    producers: list[tuple[str, int]] = field(default_factory=list)  # (module, output channel)


@dataclass
class Group:
    """The prunable components that share producers (one layer's channels, or a
    residual stream's channels, or one attention block's heads)."""

    name: str
    kind: str                    # "channels" | "hidden" | "heads" | "ffn"
    components: list[Component]
    min_keep: int = 1            # never remove every unit of a group

    def __len__(self):
        return len(self.components)


@dataclass
class DependencyGraph:
    groups: list[Group]
    # producer module name -> (channel dim of its output, output positions of each of its units)
    producer_dims: dict = field(default_factory=dict)
    traced: bool = True  # False: fx could not trace; only closed block groups are offered
    untraced_reason: str = ""

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise NetshrinkError(f"no prunable group {name!r}; groups: {', '.join(g.name for g in self.groups)}")


class _Units:
    """Union-find over unit ids, with the slots each unit owns."""

    def __init__(self):
        self.parent: list[int] = []
        self.slots: list[list[tuple[Slot, str]]] = []
        self.pinned: set[int] = set()
        self.owner: dict[Slot, int] = {}
        self.produced: list[tuple[str, int] | None] = []

    def new(self, n: int, producer: str | None = None, pinned: bool = False) -> list[int]:
        start = len(self.parent)
        for i in range(n):
            self.parent.append(start + i)
            self.slots.append([])
            self.produced.append((producer, i) if producer else None)
            if pinned:
                self.pinned.add(start + i)
        return list(range(start, start + n))

    def find(self, u: int) -> int:
        while self.parent[u] != u:
            self.parent[u] = self.parent[self.parent[u]]
            u = self.parent[u]
        return u

    def union(self, a: int, b: int) -> None:
        a, b = self.find(a), self.find(b)
        if a != b:
            self.parent[b] = a

    def slot(self, u: int, module: str, param: str, dim: int, positions, role: str) -> None:
        """Unit `u` lives at `positions` of dim `dim` of `module.param`. A slot that
        already belongs to another unit (a module called twice) couples the two."""
        for p in positions:
            s = (module, param, dim, int(p))
            self.slots[u].append((s, role))
            if s in self.owner:
                self.union(self.owner[s], u)
            else:
                self.owner[s] = u

    def pin(self, units) -> None:
        self.pinned.update(int(u) for u in units)


def analyze(model: nn.Module, example: torch.Tensor | tuple) -> DependencyGraph:
    """The groups of coupled units of `model`, found on the graph traced with torch.fx
    and run on `example`.

    >>> g = analyze(ns.zoo.models.create("resnet_small"), torch.zeros(1, 1, 28, 28))
    >>> [grp.name for grp in g.groups][:2]
    """
    closed = block_groups(model)
    for name, m in model.named_modules():
        if hasattr(m, "parametrizations") and len(m.parametrizations):
            raise NetshrinkError(f"structure: module {name!r} still has re-parametrisations "
                                 f"({', '.join(m.parametrizations.keys())}); bake them before a structural shrink")
    args = example if isinstance(example, tuple) else (example,)
    try:
        gm = trace(model, args)
    except NetshrinkError:
        raise
    except Exception as e:  # data-dependent control flow, unsupported Python
        if closed:  # only the self-contained block groups are safe to offer
            return DependencyGraph(groups=closed, producer_dims=block_producer_dims(model), traced=False,
                                   untraced_reason=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
        raise NetshrinkError(f"structure: torch.fx cannot trace {type(model).__name__} "
                             f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    units = _Units()
    runner = ops.LabelInterpreter(gm, units)
    with torch.no_grad():
        was = model.training
        model.eval()
        try:
            runner.run(*args)
        finally:
            model.train(was)
    return DependencyGraph(groups=_groups(units) + closed,
                           producer_dims={**block_producer_dims(model), **runner.producer_dims})


def _groups(units: _Units) -> list[Group]:
    comps: dict[int, list[int]] = {}
    for u in range(len(units.parent)):
        comps.setdefault(units.find(u), []).append(u)
    by_producers: dict[tuple, list[Component]] = {}
    for root, members in comps.items():
        if any(m in units.pinned for m in members):
            continue
        slots = [s for m in members for s in units.slots[m]]
        producers = [units.produced[m] for m in members if units.produced[m] is not None]
        if not producers or not slots:
            continue
        key = tuple(sorted({p[0] for p in producers}))
        by_producers.setdefault(key, []).append(Component(slots=slots, producers=producers))
    groups = []
    for key, cs in by_producers.items():
        kind = "hidden" if any(s[0][1].startswith("weight_hh") for c in cs[:1] for s in c.slots) else "channels"
        # keep a stable order: by the first producer's channel index
        cs.sort(key=lambda c: min(p[1] for p in c.producers))
        groups.append(Group(name="+".join(key), kind=kind, components=cs))
    return groups
