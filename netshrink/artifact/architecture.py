"""Module types an artifact may rebuild: each with a config (JSON), a schema, a builder.

A saved model is a base architecture (a zoo factory, a transformers config, or a model
the user passes at load) plus "edits": modules whose type or configuration differ from
the base (a Linear shrunk to fewer outputs, a Linear replaced by a sparse or low-rank
module, a block replaced by Identity). Only the types listed here can be built, so a
file can never name code to run.

A config read from a file is checked against the type's schema (exact keys, value
types and ranges) before anything is built; torch modules' configs also round-trip
(the built module's config must equal the one read), which refuses any key the schema
does not know, such as `device`. netshrink's own runtime modules define
`ns_config() -> dict` and a classmethod `from_ns_config(cfg)`; their configs are checked
generically (JSON scalars and short lists, bounded integers) and by the same round trip.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from torch import nn

from netshrink.core.targets import is_hf_conv1d
from netshrink.errors import ArtifactError
from netshrink.reparams.hyper import HyperNetwork
from netshrink.runtime.attention import PrunedMultiheadAttention
from netshrink.runtime.frequency import FrequencyConv2d, FrequencyLinear
from netshrink.runtime.generated import HyperConv2d, TiedConv2d
from netshrink.runtime.hashed_linear import HashedConv2d, HashedLinear
from netshrink.runtime.int8_dynamic import Int8DynamicLinear, Int8FusedLinear
from netshrink.runtime.int8_linear import Int8Linear
from netshrink.runtime.scaled_linear import ScaledLinear
from netshrink.runtime.low_rank import LowRankLinear, LowRankRNN, TuckerConv
from netshrink.runtime.sparse_conv import SparseConv2d
from netshrink.runtime.sparse_linear import SparseLinear

MAX_DIM = 1 << 31          # any one size (features, channels, vocabulary)
MAX_CHILDREN = 2048        # children of one container (the whole model has at most LoadLimits.max_modules)
MAX_LIST = 64              # a config's list (kernel sizes, shapes, head ids beyond are refused)


# ------------------------------------------------------------------ config schemas
@dataclass(frozen=True)
class Field:
    """One config value: `kind` in int, bool, float, str, ints (list of int), size
    (int or ints), padding (ints or "same"/"valid"), optional (None or `inner`)."""
    kind: str
    lo: float = 0
    hi: float = MAX_DIM
    choices: tuple = ()


def _check(name: str, key: str, f: Field, v) -> None:
    def bad(why: str):
        raise ArtifactError(f"{name} config: {key} = {v!r} {why}")

    if f.kind.startswith("opt_"):
        if v is None:
            return
        f = Field(f.kind[4:], f.lo, f.hi, f.choices)
    if f.kind == "bool":
        if type(v) is not bool:
            bad("is not a boolean")
    elif f.kind == "int":
        if type(v) is not int or not f.lo <= v <= f.hi:
            bad(f"is not an integer in [{f.lo}, {f.hi}]")
    elif f.kind == "float":
        if type(v) not in (int, float) or not f.lo <= v <= f.hi:
            bad(f"is not a number in [{f.lo}, {f.hi}]")
    elif f.kind == "str":
        if v not in f.choices:
            bad(f"is not one of {', '.join(map(str, f.choices))}")
    elif f.kind in ("ints", "size", "padding"):
        if f.kind == "padding" and v in ("same", "valid"):
            return
        if f.kind == "size" and type(v) is int:
            v = [v]
        if not (isinstance(v, list) and 1 <= len(v) <= MAX_LIST and all(type(x) is int and f.lo <= x <= f.hi
                                                                         for x in v)):
            bad(f"is not a short list of integers in [{f.lo}, {f.hi}]")
    else:  # pragma: no cover - a schema typo
        raise AssertionError(f.kind)


def check_config(name: str, cfg: object, schema: dict[str, Field]) -> dict:
    if not isinstance(cfg, dict):
        raise ArtifactError(f"{name} config is not an object")
    if set(cfg) != set(schema):
        extra, missing = sorted(set(cfg) - set(schema)), sorted(set(schema) - set(cfg))
        raise ArtifactError(f"{name} config has unexpected keys {extra} / lacks {missing}")
    for k, f in schema.items():
        _check(name, k, f, cfg[k])
    return cfg


def check_plain_config(name: str, cfg: object) -> dict:
    """The generic check of a runtime module's config: JSON scalars, short lists and
    small tables of them, integers within MAX_DIM, never a `device` or `dtype`."""
    if not isinstance(cfg, dict) or len(cfg) > MAX_LIST:
        raise ArtifactError(f"{name} config is not a small object")

    def ok(v, depth=0) -> bool:
        if v is None or type(v) in (bool, str):
            return not isinstance(v, str) or len(v) <= 256
        if type(v) is int:
            return -MAX_DIM <= v <= MAX_DIM
        if type(v) is float:
            return abs(v) <= 1e6
        if isinstance(v, list):
            return depth < 2 and len(v) <= MAX_LIST and all(ok(x, depth + 1) for x in v)
        if isinstance(v, dict):
            return depth < 2 and len(v) <= MAX_LIST and all(isinstance(k, str) and ok(x, depth + 1)
                                                            for k, x in v.items())
        return False

    for k, v in cfg.items():
        if k in ("device", "dtype") or not ok(v):
            raise ArtifactError(f"{name} config: {k} = {v!r} is not allowed")
    return cfg


_I, _B, _POS = Field("int"), Field("bool"), Field("int", 1)
_EPS = Field("float", 0, 1)
_LINEAR = {"in_features": _I, "out_features": _I, "bias": _B}
_CONV = {"in_channels": _I, "out_channels": _I, "kernel_size": Field("ints", 1, 1 << 16),
         "stride": Field("ints", 1, 1 << 16), "padding": Field("padding", 0, 1 << 16),
         "dilation": Field("ints", 1, 1 << 16), "groups": _POS, "bias": _B,
         "padding_mode": Field("str", choices=("zeros", "reflect", "replicate", "circular"))}
_BN = {"num_features": _I, "eps": _EPS, "momentum": Field("opt_float", 0, 1), "affine": _B,
       "track_running_stats": _B}
_LN = {"normalized_shape": Field("ints"), "eps": _EPS, "elementwise_affine": _B, "bias": _B}
_RNN = {"input_size": _I, "hidden_size": _POS, "num_layers": Field("int", 1, 1024), "bias": _B,
        "batch_first": _B, "dropout": Field("float", 0, 1), "bidirectional": _B}
_EMB = {"num_embeddings": _I, "embedding_dim": _I, "padding_idx": Field("opt_int", -MAX_DIM)}


# -------------------------------------------------------------- configs of modules
def _linear(m):
    return {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None}


def _conv(m):
    return {"in_channels": m.in_channels, "out_channels": m.out_channels, "kernel_size": list(m.kernel_size),
            "stride": list(m.stride), "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
            "dilation": list(m.dilation), "groups": m.groups, "bias": m.bias is not None,
            "padding_mode": m.padding_mode}


def _bn(m):
    return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum, "affine": m.affine,
            "track_running_stats": m.track_running_stats}


def _ln(m):
    return {"normalized_shape": list(m.normalized_shape), "eps": m.eps,
            "elementwise_affine": m.elementwise_affine, "bias": getattr(m, "bias", None) is not None}


def _rnn(m):
    cfg = {"input_size": m.input_size, "hidden_size": m.hidden_size, "num_layers": m.num_layers,
           "bias": m.bias, "batch_first": m.batch_first, "dropout": m.dropout, "bidirectional": m.bidirectional}
    if isinstance(m, nn.LSTM):
        cfg["proj_size"] = m.proj_size
    return cfg


def _emb(m):
    return {"num_embeddings": m.num_embeddings, "embedding_dim": m.embedding_dim, "padding_idx": m.padding_idx}


def _container(m):
    return {"children": list(m._modules.keys())}


def _check_children(name: str, cfg: object) -> dict:
    if not (isinstance(cfg, dict) and set(cfg) == {"children"} and isinstance(cfg["children"], list)):
        raise ArtifactError(f"{name} config must be {{'children': [names]}}")
    ch = cfg["children"]
    if len(ch) > MAX_CHILDREN:
        raise ArtifactError(f"{name} config has {len(ch):,} children (limit {MAX_CHILDREN:,})")
    if not all(isinstance(c, str) and 0 < len(c) <= 128 and "." not in c and c.isprintable() for c in ch) \
            or len(set(ch)) != len(ch):
        raise ArtifactError(f"{name} config has malformed child names")
    if name == "ModuleList" and ch != [str(i) for i in range(len(ch))]:
        raise ArtifactError("ModuleList children must be named 0, 1, ...")
    return cfg


def _build_container(cls):
    def build(cfg):
        children = [(n, nn.Identity()) for n in cfg["children"]]
        if cls is nn.Sequential:
            return nn.Sequential(OrderedDict(children))
        if cls is nn.ModuleList:
            return nn.ModuleList(m for _, m in children)
        return nn.ModuleDict(dict(children))
    return build


def _schema(schema: dict[str, Field]) -> Callable[[str, object], dict]:
    return lambda name, cfg: check_config(name, cfg, schema)


@dataclass(frozen=True)
class ModuleType:
    cls: type
    config: Callable[[nn.Module], dict]     # module -> its JSON config
    check: Callable[[str, object], dict]    # refuse a malformed config before building
    build: Callable[[dict], nn.Module]


_TORCH: dict[str, ModuleType] = {
    "Linear": ModuleType(nn.Linear, _linear, _schema(_LINEAR), lambda c: nn.Linear(**c)),
    "Conv1d": ModuleType(nn.Conv1d, _conv, _schema(_CONV), lambda c: nn.Conv1d(**c)),
    "Conv2d": ModuleType(nn.Conv2d, _conv, _schema(_CONV), lambda c: nn.Conv2d(**c)),
    "BatchNorm1d": ModuleType(nn.BatchNorm1d, _bn, _schema(_BN), lambda c: nn.BatchNorm1d(**c)),
    "BatchNorm2d": ModuleType(nn.BatchNorm2d, _bn, _schema(_BN), lambda c: nn.BatchNorm2d(**c)),
    "LayerNorm": ModuleType(nn.LayerNorm, _ln, _schema(_LN), lambda c: nn.LayerNorm(**c)),
    "LSTM": ModuleType(nn.LSTM, _rnn, _schema({**_RNN, "proj_size": _I}), lambda c: nn.LSTM(**c)),
    "GRU": ModuleType(nn.GRU, _rnn, _schema(_RNN), lambda c: nn.GRU(**c)),
    "Embedding": ModuleType(nn.Embedding, _emb, _schema(_EMB), lambda c: nn.Embedding(**c)),
    "Identity": ModuleType(nn.Identity, lambda m: {}, _schema({}), lambda c: nn.Identity()),
    "ReLU": ModuleType(nn.ReLU, lambda m: {}, _schema({}), lambda c: nn.ReLU()),
    "Sequential": ModuleType(nn.Sequential, _container, _check_children, _build_container(nn.Sequential)),
    "ModuleList": ModuleType(nn.ModuleList, _container, _check_children, _build_container(nn.ModuleList)),
    "ModuleDict": ModuleType(nn.ModuleDict, _container, _check_children, _build_container(nn.ModuleDict)),
}

# netshrink's own buildable modules (runtime kernels, factorised layers...)
_NETSHRINK: list[type] = [Int8Linear, HashedLinear, HashedConv2d, FrequencyLinear, FrequencyConv2d, HyperConv2d,
                          TiedConv2d, HyperNetwork, LowRankLinear, TuckerConv, LowRankRNN, SparseLinear,
                          SparseConv2d, PrunedMultiheadAttention, Int8DynamicLinear, Int8FusedLinear,
                          ScaledLinear]
_USER: dict[str, type] = {}


def register_module(cls: type) -> type:
    """Make a custom module type rebuildable from artifacts (it needs `ns_config()`
    and a classmethod `from_ns_config(cfg)`). Refuses a name already taken."""
    if not (hasattr(cls, "ns_config") and hasattr(cls, "from_ns_config")):
        raise ArtifactError(f"{cls.__name__}: a registered module needs ns_config and from_ns_config")
    taken = _custom_types().get(cls.__name__)
    if cls.__name__ in _TORCH or (taken is not None and taken is not cls):
        raise ArtifactError(f"module type name {cls.__name__!r} is already registered")
    _USER[cls.__name__] = cls
    return cls


def _custom_types() -> dict[str, type]:
    out = {c.__name__: c for c in _NETSHRINK}
    out.update(_USER)
    return out


def type_name(m: nn.Module) -> str:
    return type(m).__name__


def known_types() -> list[str]:
    return sorted(set(_TORCH) | set(_custom_types()))


def is_container(m: nn.Module) -> bool:
    return type(m) in (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def config_of(m: nn.Module) -> dict | None:
    """The JSON config that rebuilds `m`, or None for types we don't build (they
    are compared by type only and must come from the base)."""
    name = type_name(m)
    if name in _TORCH and type(m) is _TORCH[name].cls:
        return _TORCH[name].config(m)
    if is_hf_conv1d(m):
        return {"nf": m.nf, "nx": m.nx}
    custom = _custom_types()
    if name in custom and type(m) is custom[name]:
        return m.ns_config()
    return None


def build(name: object, cfg: object) -> nn.Module:
    """The module of type `name` (a registered name, never an import path) from `cfg`,
    checked: schema first, then the built module's own config must equal `cfg`.
    Call it inside `budget.BuildBudget` so that its allocation is bounded."""
    if not isinstance(name, str) or not (name in _TORCH or name in _custom_types() or name == "Conv1D"):
        raise ArtifactError(f"module type {name!r} is not one netshrink can build (known: {', '.join(known_types())})")
    if name == "Conv1D":   # transformers' (GPT-2): a Linear storing its weight (in, out); imported only here
        cfg = check_config(name, cfg, {"nf": _POS, "nx": _POS})
        from transformers.pytorch_utils import Conv1D

        make = lambda c: Conv1D(c["nf"], c["nx"])
    elif name in _TORCH:
        t = _TORCH[name]
        cfg = t.check(name, cfg)
        make = t.build
    else:
        cfg = check_plain_config(name, cfg)
        make = _custom_types()[name].from_ns_config
    try:
        m = make(cfg)
    except ArtifactError:
        raise
    except Exception as e:  # noqa: BLE001 - the builders' own argument checks (TypeError, ValueError...)
        raise ArtifactError(f"cannot build {name} from {cfg}: {type(e).__name__}: {e}") from None
    if config_of(m) != cfg:
        raise ArtifactError(f"{name} config {cfg} does not describe the module it builds ({config_of(m)})")
    return m
