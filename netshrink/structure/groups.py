"""What the analysis finds: components (coupled units removed together), groups of
them, the dependency graph; and the union-find over unit ids that builds them."""
from __future__ import annotations

from dataclasses import dataclass, field

from netshrink.errors import NetshrinkError

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


class Units:
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

    def groups(self) -> list[Group]:
        """The unpinned components, grouped by the set of modules producing them."""
        comps: dict[int, list[int]] = {}
        for u in range(len(self.parent)):
            comps.setdefault(self.find(u), []).append(u)
        by_producers: dict[tuple, list[Component]] = {}
        for root, members in comps.items():
            if any(m in self.pinned for m in members):
                continue
            slots = [s for m in members for s in self.slots[m]]
            producers = [self.produced[m] for m in members if self.produced[m] is not None]
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
