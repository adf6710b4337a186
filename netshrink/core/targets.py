"""Which parameters a method touches: one selection seam for every method.

A `Targets` names parameters by fully-qualified name (``fc1.weight``), by regular
expression (``re:.*weight``) or by module type (``type:Linear``). `select` turns it
into `Site`s, each one parameter of one module. Patterns that match nothing are an
error that names the pattern, because a silent no-op is the worst failure a
compression recipe can have.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from torch import nn

from netshrink.errors import TargetError

# Module types whose weights are compressed by default: the layers that hold
# almost all parameters. Biases and normalisation layers are left alone.
DEFAULT_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LSTM, nn.GRU, nn.RNN, nn.Embedding)


@dataclass(frozen=True)
class Site:
    """One parameter of one module: ``module_name.param_name``."""

    module_name: str
    param_name: str
    module: nn.Module = field(compare=False, repr=False)

    @property
    def name(self) -> str:
        return f"{self.module_name}.{self.param_name}" if self.module_name else self.param_name

    @property
    def tensor(self):
        """The current (possibly re-parametrised) value of the parameter."""
        return getattr(self.module, self.param_name)

    @property
    def kind(self) -> str:
        """'linear', 'conv', 'recurrent', 'embedding' or the module's class name."""
        m = self.module
        if isinstance(m, nn.Linear):
            return "linear"
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return "conv"
        if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN)):
            return "recurrent"
        if isinstance(m, nn.Embedding):
            return "embedding"
        return type(m).__name__


def _param_names(module: nn.Module) -> list[str]:
    """Direct parameters of a module, seeing through parametrisations."""
    names = [n for n, _ in module.named_parameters(recurse=False)]
    if hasattr(module, "parametrizations"):
        names += list(module.parametrizations.keys())
    return names


def is_hf_conv1d(module: nn.Module) -> bool:
    """transformers' `Conv1D` (GPT-2 family): a Linear whose weight is stored (in, out).
    Known by name, so that netshrink never imports transformers for it."""
    return type(module).__name__ == "Conv1D" and type(module).__module__.startswith("transformers")


def foreign_parametrization(module: nn.Module, pname: str) -> str | None:
    """The name of a parametrisation that is not netshrink's on `module.pname` (torch's
    weight_norm in wav2vec2 / HuBERT ...), or None."""
    from torch.nn.utils import parametrize

    if not parametrize.is_parametrized(module, pname):
        return None
    other = [type(p).__name__ for p in module.parametrizations[pname] if not _is_netshrink_reparam(p)]
    return other[0] if other else None


def _is_netshrink_reparam(p: nn.Module) -> bool:
    """isinstance(p, core.reparam.Reparam), read from the class hierarchy: core/reparam.py
    imports this module, so this one cannot import it back."""
    return any(c.__name__ == "Reparam" and c.__module__ == "netshrink.core.reparam" for c in type(p).__mro__)


def _is_default_weight(module: nn.Module, pname: str) -> bool:
    if not (isinstance(module, DEFAULT_TYPES) or is_hf_conv1d(module)):
        return False
    if foreign_parametrization(module, pname):
        return False   # a weight computed by someone else's parametrisation: not ours to rewrite
    return pname == "weight" or pname.startswith("weight_")


@dataclass
class Targets:
    """Include / exclude patterns. Empty `include` means every layer weight."""

    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)

    @classmethod
    def from_value(cls, value) -> "Targets":
        """From TOML: a string, a list of patterns, or {include=[...], exclude=[...]}."""
        if value is None:
            return cls()
        if isinstance(value, Targets):
            return value
        if isinstance(value, str):
            return cls(include=[value])
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return cls(include=list(value))
        if isinstance(value, dict):
            unknown = set(value) - {"include", "exclude"}
            if unknown:
                raise TargetError(f"targets: unknown key(s) {sorted(unknown)}; valid: include, exclude")
            inc, exc = value.get("include", []), value.get("exclude", [])
            inc = [inc] if isinstance(inc, str) else list(inc)
            exc = [exc] if isinstance(exc, str) else list(exc)
            return cls(include=inc, exclude=exc)
        raise TargetError(f"targets: expected a pattern, a list of patterns or {{include, exclude}}, got {value!r}")

    def to_value(self):
        out = {}
        if self.include:
            out["include"] = list(self.include)
        if self.exclude:
            out["exclude"] = list(self.exclude)
        return out

    def __post_init__(self):
        for p in self.include + self.exclude:
            if p.startswith("re:"):
                try:
                    re.compile(p[3:])
                except re.error as e:
                    raise TargetError(f"targets: bad regular expression {p!r}: {e}") from None


def _matches(pattern: str, name: str, module: nn.Module) -> bool:
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], name) is not None
    if pattern.startswith("type:"):
        return type(module).__name__ == pattern[5:]
    return pattern == name or name.startswith(pattern + ".")


def select(model: nn.Module, targets: Targets | None = None, *, default_filter=_is_default_weight) -> list[Site]:
    """The parameters `targets` names in `model`, in module order.

    >>> sites = select(model, Targets(include=["re:fc.*weight"]))
    """
    targets = targets or Targets()
    sites, hits = [], {p: 0 for p in targets.include + targets.exclude}
    for mname, module in model.named_modules():
        for pname in _param_names(module):
            site = Site(mname, pname, module)
            if targets.include:
                inc = [p for p in targets.include if _matches(p, site.name, module)]
                for p in inc:
                    hits[p] += 1
                # A type pattern selects that module's weights, not its biases.
                if not inc or (all(p.startswith("type:") for p in inc) and not pname.startswith("weight")):
                    continue
            elif not default_filter(module, pname):
                continue
            exc = [p for p in targets.exclude if _matches(p, site.name, module)]
            for p in exc:
                hits[p] += 1
            if exc:
                continue
            sites.append(site)
    missing = [p for p, n in hits.items() if n == 0]
    if missing:
        raise TargetError(f"target pattern(s) {missing} match no parameter of {type(model).__name__}")
    return sites


V = TypeVar("V")


class PerLayer(Generic[V]):
    """Per-layer values of one hyperparameter: target pattern -> value, in order.

    The patterns are those of `Targets` (a name such as ``fc1.weight`` or ``fc1``,
    ``re:...``, ``type:Conv2d``); the first pattern that matches a parameter gives its
    value, parameters no pattern matches get the method's default. In TOML, a table:

        per_layer = { "fc3.weight" = 0.74, "type:Conv2d" = 0.5 }

    A pattern that matches none of the method's parameters is a TargetError when the
    method runs (`resolve`), like a target pattern that matches nothing. Annotate a
    field `PerLayer[float]` (or `[int]`) and the values are type-checked like fields.
    Immutable, so `field(default_factory=PerLayer)` and copies share nothing mutable.
    """

    __slots__ = ("_items",)

    def __init__(self, items=None):
        if isinstance(items, PerLayer):
            items = items.to_value()
        if items is None:
            items = {}
        if not isinstance(items, dict) or not all(isinstance(k, str) for k in items):
            raise TargetError(f"per-layer values: expected a table of pattern = value, got {items!r}")
        for p in items:
            if p.startswith("re:"):
                try:
                    re.compile(p[3:])
                except re.error as e:
                    raise TargetError(f"per-layer values: bad regular expression {p!r}: {e}") from None
        self._items = tuple(items.items())

    # a read-only mapping
    def items(self):
        return self._items

    def keys(self):
        return [k for k, _ in self._items]

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self._items)

    def __bool__(self):
        return bool(self._items)

    def __getitem__(self, key):
        return dict(self._items)[key]

    def __eq__(self, other):
        if isinstance(other, PerLayer):
            return self._items == other._items
        if isinstance(other, dict):
            return dict(self._items) == other
        return NotImplemented

    def __hash__(self):
        return hash(self._items)

    def __repr__(self):
        return f"PerLayer({dict(self._items)!r})"

    def __deepcopy__(self, memo):
        return self   # immutable

    def to_value(self) -> dict:
        return dict(self._items)

    def value_of(self, site: Site, default):
        """The value of the first pattern matching `site`, else `default`."""
        for pattern, v in self._items:
            if _matches(pattern, site.name, site.module):
                return v
        return default

    def resolve(self, sites: list[Site], default, *, owner: str = "per_layer") -> list:
        """One value per site; a pattern that matches none of `sites` is a TargetError."""
        unused = [p for p, _ in self._items if not any(_matches(p, s.name, s.module) for s in sites)]
        if unused:
            raise TargetError(f"{owner}: per_layer pattern(s) {unused} match none of the method's parameters "
                              f"({', '.join(s.name for s in sites[:8])}{' ...' if len(sites) > 8 else ''})")
        return [self.value_of(s, default) for s in sites]
