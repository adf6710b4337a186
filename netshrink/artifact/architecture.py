"""Module types an artifact may rebuild, each with its config (JSON) and builder.

A saved model is its zoo factory plus "edits": modules whose type or configuration
differ from what the factory builds (a Linear shrunk to fewer outputs, a Linear
replaced by a sparse or low-rank module, a block replaced by Identity). Only the
types listed here can be built, so a file can never name code to run.

netshrink's own runtime modules define `ns_config() -> dict` and a classmethod
`from_ns_config(cfg)`; they are listed in `_netshrink_modules`.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from netshrink.errors import ArtifactError


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


def _build_container(cls):
    def build(cfg):
        children = [(n, nn.Identity()) for n in cfg["children"]]
        if cls is nn.Sequential:
            from collections import OrderedDict
            return nn.Sequential(OrderedDict(children))
        if cls is nn.ModuleList:
            return nn.ModuleList(m for _, m in children)
        return nn.ModuleDict(dict(children))
    return build


# type name -> (config of a module, build from config)
_TORCH: dict[str, tuple[type, Callable, Callable]] = {
    "Linear": (nn.Linear, _linear, lambda c: nn.Linear(**c)),
    "Conv1d": (nn.Conv1d, _conv, lambda c: nn.Conv1d(**c)),
    "Conv2d": (nn.Conv2d, _conv, lambda c: nn.Conv2d(**c)),
    "BatchNorm1d": (nn.BatchNorm1d, _bn, lambda c: nn.BatchNorm1d(**c)),
    "BatchNorm2d": (nn.BatchNorm2d, _bn, lambda c: nn.BatchNorm2d(**c)),
    "LayerNorm": (nn.LayerNorm, _ln, lambda c: nn.LayerNorm(**c)),
    "LSTM": (nn.LSTM, _rnn, lambda c: nn.LSTM(**c)),
    "GRU": (nn.GRU, _rnn, lambda c: nn.GRU(**c)),
    "Embedding": (nn.Embedding, _emb, lambda c: nn.Embedding(**c)),
    "Identity": (nn.Identity, lambda m: {}, lambda c: nn.Identity()),
    "ReLU": (nn.ReLU, lambda m: {}, lambda c: nn.ReLU()),
    "Sequential": (nn.Sequential, _container, _build_container(nn.Sequential)),
    "ModuleList": (nn.ModuleList, _container, _build_container(nn.ModuleList)),
    "ModuleDict": (nn.ModuleDict, _container, _build_container(nn.ModuleDict)),
}

_USER: dict[str, type] = {}


def _netshrink_modules() -> list[type]:
    """netshrink's own buildable modules (runtime kernels, factorised layers...)."""
    from netshrink.runtime.int8_linear import Int8Linear
    from netshrink.runtime.hashed_linear import HashedConv2d, HashedLinear
    from netshrink.runtime.frequency import FrequencyConv2d, FrequencyLinear
    from netshrink.runtime.generated import HyperConv2d, TiedConv2d
    from netshrink.reparams.hyper import HyperNetwork
    from netshrink.runtime.low_rank import LowRankLinear, LowRankRNN, TuckerConv
    from netshrink.runtime.sparse_linear import SparseLinear
    from netshrink.runtime.sparse_conv import SparseConv2d
    from netshrink.runtime.attention import PrunedMultiheadAttention

    return [Int8Linear] + [HashedLinear, HashedConv2d, FrequencyLinear, FrequencyConv2d, HyperConv2d, TiedConv2d,
                           HyperNetwork] + [LowRankLinear, TuckerConv, LowRankRNN] + [SparseLinear, SparseConv2d] + [
        PrunedMultiheadAttention]


def register_module(cls: type) -> type:
    """Make a custom module type rebuildable from artifacts (needs ns_config /
    from_ns_config)."""
    _USER[cls.__name__] = cls
    return cls


def _custom_types() -> dict[str, type]:
    out = {c.__name__: c for c in _netshrink_modules()}
    out.update(_USER)
    return out


def type_name(m: nn.Module) -> str:
    return type(m).__name__


def config_of(m: nn.Module) -> dict | None:
    """The JSON config that rebuilds `m`, or None for types we don't build (they
    are compared by type only and must come from the factory)."""
    name = type_name(m)
    if name in _TORCH and type(m) is _TORCH[name][0]:
        return _TORCH[name][1](m)
    if hasattr(m, "ns_config") and name in _custom_types():
        return m.ns_config()
    return None


# A file may describe an architecture, never force an absurd allocation: every
# module is first built on torch's "meta" device (no memory) and counted.
MAX_ELEMENTS = 2 ** 28  # 1 GiB of fp32


def _config_estimate(config: dict | None) -> int:
    """The product of the two largest integers in a config: a weight matrix's size."""
    ints = sorted((v for v in (config or {}).values() if type(v) is int and v > 0), reverse=True)
    return ints[0] * (ints[1] if len(ints) > 1 else 1) if ints else 0


def check_size(make, what: str, config: dict | None = None) -> None:
    """Raise ArtifactError if `make()` would allocate more than MAX_ELEMENTS."""
    import torch

    try:
        with torch.device("meta"):
            m = make()
        n = sum(t.numel() for t in list(m.parameters()) + list(m.buffers()))
    except ArtifactError:
        raise
    except Exception:  # a builder that needs real data (e.g. packs int8 weights):
        n = _config_estimate(config)  # bound it by its two largest sizes instead
    if n > MAX_ELEMENTS:
        raise ArtifactError(f"refusing to build {what}: it would hold {n:,} elements (limit {MAX_ELEMENTS:,})")


def build(name: str, cfg: dict) -> nn.Module:
    check_size(lambda: _build(name, cfg), f"{name} {cfg}", cfg)
    return _build(name, cfg)


def _build(name: str, cfg: dict) -> nn.Module:
    if name in _TORCH:
        try:
            return _TORCH[name][2](cfg)
        except (TypeError, ValueError, KeyError) as e:
            raise ArtifactError(f"cannot build {name} from {cfg}: {e}") from None
    custom = _custom_types()
    if name in custom:
        try:
            return custom[name].from_ns_config(cfg)
        except (TypeError, ValueError, KeyError) as e:
            raise ArtifactError(f"cannot build {name} from {cfg}: {e}") from None
    raise ArtifactError(f"module type {name!r} is not one netshrink can build "
                        f"(known: {', '.join(sorted(set(_TORCH) | set(custom)))})")


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def _get(root: nn.Module, path: str) -> nn.Module | None:
    try:
        return root.get_submodule(path)
    except AttributeError:
        return None


_SCALARS = (bool, int, float, str)


def _scalar_attrs(m: nn.Module) -> dict:
    """Plain scalar attributes (e.g. an attention block's head count), which some
    modules use in forward and which structured pruning may change."""
    return {k: v for k, v in vars(m).items()
            if not k.startswith("_") and k != "training" and type(v) in _SCALARS}


def diff_edits(fresh: nn.Module, model: nn.Module) -> list[dict]:
    """The edits that turn the factory's `fresh` model into `model`'s architecture.
    `fresh` is modified in place to match (so it can be checked)."""
    edits = []
    for path, mod in model.named_modules():
        cur = _get(fresh, path) if path else fresh
        cfg = config_of(mod)
        same = cur is not None and type(cur) is type(mod) and config_of(cur) == cfg
        if same:
            want, have = _scalar_attrs(mod), _scalar_attrs(cur)
            changed = {k: v for k, v in want.items() if k in have and have[k] != v}
            if changed:
                for k, v in changed.items():
                    setattr(cur, k, v)
                edits.append({"path": path, "attrs": changed})
            continue
        if not path:
            raise ArtifactError(f"cannot save: the model is a {type_name(mod)}, its factory builds a {type_name(cur)}")
        if cfg is None:
            raise ArtifactError(f"cannot save: module {path!r} of type {type_name(mod)} differs from what the "
                                "model's factory builds, and it is not a registered module type")
        set_submodule(fresh, path, build(type_name(mod), cfg))
        edits.append({"path": path, "type": type_name(mod), "config": cfg})
    return edits


def _apply_attrs(model: nn.Module, e: dict) -> None:
    """Set scalar attributes that already exist with a value of the same type."""
    target = _get(model, e["path"]) if e["path"] else model
    if target is None or not isinstance(e["attrs"], dict):
        raise ArtifactError(f"attribute edit names a missing module {e['path']!r}")
    for k, v in e["attrs"].items():
        old = vars(target).get(k)
        if k.startswith("_") or type(v) not in _SCALARS or type(old) is not type(v):
            raise ArtifactError(f"attribute edit {e['path']}.{k} = {v!r} is not allowed")
        setattr(target, k, v)


def apply_edits(model: nn.Module, edits: list[dict]) -> None:
    for e in edits:
        if isinstance(e, dict) and isinstance(e.get("path"), str) and "attrs" in e:
            _apply_attrs(model, e)
            continue
        if not (isinstance(e, dict) and isinstance(e.get("path"), str) and isinstance(e.get("type"), str)
                and isinstance(e.get("config"), dict)):
            raise ArtifactError(f"malformed architecture edit {e!r}")
        parent = e["path"].rpartition(".")[0]
        if parent and _get(model, parent) is None:
            raise ArtifactError(f"architecture edit names a missing module {parent!r}")
        set_submodule(model, e["path"], build(e["type"], e["config"]))
