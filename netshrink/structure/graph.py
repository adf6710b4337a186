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

Tracing: torch.fx first (a tracer that runs the example, see tracer.py). Its graph
must reproduce the model's outputs on the example; if fx cannot trace the model, or
its graph takes another path than the model (`isinstance(x, torch.Tensor)` is False
for an fx proxy), the model is traced with torch.export instead and the ATen graph is
analysed (see exported.py). If neither works, only closed block groups are offered
(or a NetshrinkError names both reasons).

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
    block: str = ""              # heads of an attention module: its path (shrink may replace the module)

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
    for name, m in model.named_modules():
        if hasattr(m, "parametrizations") and len(m.parametrizations):
            raise NetshrinkError(f"structure: module {name!r} still has re-parametrisations "
                                 f"({', '.join(m.parametrizations.keys())}); bake them before a structural shrink")
    args = example if isinstance(example, tuple) else (example,)
    why_fx = ""
    try:
        gm = trace(model, args)
        why_fx = _diverges(model, gm, args)
    except NetshrinkError:
        raise
    except Exception as e:  # unsupported Python on proxies (torch.finfo(x.dtype), iterating a tensor ...)
        why_fx = _short(e)
    if why_fx:
        return _analyze_exported(model, args, why_fx)
    units = _Units()
    runner = ops.LabelInterpreter(gm, units)
    _run(model, runner, args)
    return _result(model, units, runner)


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"


def _run(model, runner, args) -> None:
    with torch.no_grad():
        was = model.training
        model.eval()
        try:
            runner.run(*args)
        except NetshrinkError as e:  # fx's interpreter appends the node and a traceback: one message is enough
            raise NetshrinkError(str(e).split("\n")[0]) from None
        finally:
            model.train(was)


def _result(model, units, runner) -> DependencyGraph:
    ok = {p for p, fine in runner.attention_ok.items() if fine}
    return DependencyGraph(groups=_groups(units) + block_groups(model, ok),
                           producer_dims={**block_producer_dims(model), **runner.producer_dims})


def _diverges(model: nn.Module, gm, args) -> str:
    """Empty if the traced graph gives the model's outputs on the example, else why not."""
    from torch.utils._pytree import tree_leaves
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            want, got = tree_leaves(model(*args)), tree_leaves(gm(*args))
    except Exception as e:
        return f"the traced graph does not run ({_short(e)})"
    finally:
        model.train(was)
    if len(want) != len(got):
        return "the traced graph returns another structure than the model"
    for a, b in zip(want, got):
        if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor):
            return "the traced graph returns another structure than the model"
        if isinstance(a, torch.Tensor) and (a.shape != b.shape or not torch.allclose(
                a.float(), b.float(), rtol=1e-4, atol=1e-5, equal_nan=True)):
            return "the traced graph computes other outputs than the model on the example " \
                   "(Python in forward that a proxy takes another path through)"
    return ""


def _analyze_exported(model: nn.Module, args: tuple, why_fx: str) -> DependencyGraph:
    """torch.fx failed: analyse the graph torch.export gives; failing that, offer only
    the closed block groups (attention heads and FFN neurons inside Transformer layers)."""
    from netshrink.structure.exported import export_graph

    try:
        gm = export_graph(model, args)
    except NetshrinkError:
        raise
    except Exception as e:
        closed = block_groups(model)
        why = f"torch.fx: {why_fx}; torch.export: {_short(e)}"
        if closed:  # only the self-contained block groups are safe to offer
            return DependencyGraph(groups=closed, producer_dims=block_producer_dims(model), traced=False,
                                   untraced_reason=why)
        raise NetshrinkError(f"structure: cannot trace {type(model).__name__} ({why})") from None
    from netshrink.structure.exported import AtenLabelInterpreter

    units = _Units()
    runner = AtenLabelInterpreter(gm, units, model)
    try:
        _run(model, runner, args)
    except NetshrinkError as e:  # an op the analysis does not know: closed groups are still safe
        closed = block_groups(model)
        if not closed:
            raise
        return DependencyGraph(groups=closed, producer_dims=block_producer_dims(model), traced=False,
                               untraced_reason=f"torch.fx: {why_fx}; on the torch.export graph: {e}")
    graph = _result(model, units, runner)
    graph.untraced_reason = f"traced with torch.export (torch.fx: {why_fx})"
    return graph


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
