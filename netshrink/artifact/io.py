"""save / load a compressed model as a .nshr artifact.

The file holds the model's base — a zoo factory (name + JSON kwargs), a transformers
class and config, or, for a user's own model, only its class name (the user passes the
base at load: `ns.load(path, base=MyNet())`) — the architecture edits compression made
(see edits.py), and the state tensors, each stored by the smallest lossless encoding
the codec finds. Nothing in the file is ever executed.

Loading is bounded and validated, in this order, so that a crafted file is refused
before it costs memory or time (see budget.py):
  1. the header: size, nesting depth, fields and types;
  2. the architecture, built on the "meta" device within a budget of modules and bytes
     that the file's size sets (`LoadLimits`), every config checked against its schema;
  3. every stored tensor's name, shape and dtype against that architecture;
  4. only then: decode the tensors, build for real, load the state.
Every problem is an ArtifactError.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from netshrink.artifact import transformers_base
from netshrink.artifact.budget import BuildBudget, LoadLimits
from netshrink.artifact.edits import apply_edits, diff_edits, full_edits
from netshrink.codec import dtypes
from netshrink.codec.archive import open_archive, write_archive
from netshrink.core import factories
from netshrink.core.reparam import Reparam
from netshrink.errors import ArtifactError, NetshrinkError

FORMAT = "netshrink-model"
FORMAT_VERSION = 1
_BASES = ("factory", "transformers", "user")
_KEYS = {"format", "version", "edits", "meta", "dtype"}
# A model whose floating tensors all share one dtype other than float32 (a float64 or bf16
# user model) records it; load converts the rebuilt architecture to it before the tensor check.
_MODEL_DTYPES = {"float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _check_savable(model: nn.Module) -> None:
    # netshrink's re-parametrisations must be baked; a model's own (torch weight_norm in
    # wav2vec2 / HuBERT, rebuilt as such by its constructor) is saved as it is
    left = [n for n, m in model.named_modules() if parametrize.is_parametrized(m)
            and any(isinstance(rp, Reparam) for key in m.parametrizations.keys() for rp in m.parametrizations[key])]
    if left:
        raise NetshrinkError(f"cannot save: {left} still carry re-parametrisations; finish the "
                             "compression (session.finish() / compress_) first")


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` whose tensors are on "meta" (no memory), to diff or check against."""
    memo = {}
    for t in list(model.parameters()) + list(model.buffers()):
        m = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(m, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else m
    return copy.deepcopy(model, memo)


def describe_base(model: nn.Module, base: nn.Module | None = None) -> tuple[dict, list[dict]]:
    """({base kind: description}, edits) of `model` as `save` writes them."""
    factory = factories.factory_of(model)
    if factory is not None:
        fresh = factories.create(factory["name"], **factory["kwargs"])
        return {"factory": factory}, diff_edits(fresh, model, where="the model's factory")
    spec = transformers_base.spec_of(model)
    if spec is not None:
        with BuildBudget(1 << 62, 1 << 40, "the transformers model"):
            fresh = transformers_base.build(spec)
        return {"transformers": spec}, diff_edits(fresh, model, where="the transformers config")
    base = base if base is not None else getattr(model, "ns_base", None)
    user = {"class": type(model).__name__}
    if base is None:  # the base arrives at load: rebuild every buildable leaf
        return {"user": {**user, "edits": "full"}}, full_edits(model)
    if type(base) is not type(model):
        raise NetshrinkError(f"cannot save: base is a {type(base).__name__}, the model a {type(model).__name__}")
    return {"user": {**user, "edits": "diff"}}, diff_edits(_meta_copy(base), model, where="the base")


def save(model: nn.Module, path: str | os.PathLike, *, meta: dict | None = None,
         hints: dict[str, str] | None = None, base: nn.Module | None = None) -> int:
    """Write `model` to `path` atomically; returns the file's size in bytes.

    A zoo model and a transformers model are rebuilt from the file alone; any other
    model is stored relative to a base the user passes again at load — `base` here
    (the uncompressed architecture; without it every buildable layer is recorded).
    `meta` must hold no measurement if the file is to be reproducible.

    >>> ns.save(model, "lenet.nshr")
    >>> ns.save(my_pruned_net, "mine.nshr", base=MyNet())   # then ns.load("mine.nshr", base=MyNet())
    """
    _check_savable(model)
    desc, edits = describe_base(model, base)
    header = {"format": FORMAT, "version": FORMAT_VERSION, **desc, "edits": edits, "meta": meta or {}}
    tensors = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    floating = {t.dtype for t in tensors.values() if t.is_floating_point()}
    if len(floating) == 1 and (dt := next(iter(floating))) != torch.float32:
        name = next((k for k, v in _MODEL_DTYPES.items() if v == dt), None)
        if name is None:
            raise ArtifactError(f"cannot save a model whose tensors are {dt}")
        header["dtype"] = name
    return write_archive(path, header, tensors, hints=hints)


# ------------------------------------------------------------------------------ load
def _check_header(path, header: dict) -> str:
    if header.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a netshrink model (format {header.get('format')!r})")
    if header.get("version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: model format version {header.get('version')!r} is not supported "
                            f"(this netshrink reads version {FORMAT_VERSION})")
    kinds = [k for k in _BASES if k in header]
    extra = sorted(set(header) - _KEYS - set(_BASES))
    if len(kinds) != 1 or extra or not isinstance(header.get("meta", {}), dict):
        raise ArtifactError(f"{path}: malformed model header (keys {sorted(header)})")
    return kinds[0]


def _factory(spec: object) -> nn.Module:
    if not (isinstance(spec, dict) and set(spec) == {"name", "kwargs"} and isinstance(spec["name"], str)
            and isinstance(spec["kwargs"], dict)):
        raise ArtifactError(f"malformed model factory {str(spec)[:200]}")
    name, kwargs = spec["name"], spec["kwargs"]
    bad = [k for k in kwargs if not k.isidentifier() or k.startswith("_") or k == "name"]
    if bad:
        raise ArtifactError(f"model {name}: malformed factory arguments {bad}")
    try:
        return factories.create(name, **kwargs)
    except NetshrinkError as e:
        raise ArtifactError(str(e)) from None
    except Exception as e:  # noqa: BLE001 - the factory's own checks of its arguments
        raise ArtifactError(f"model {name}: cannot build from {kwargs}: {type(e).__name__}: {str(e)[:200]}") from None


def _build(kind: str, header: dict, base: nn.Module | None, meta: bool) -> nn.Module:
    if kind == "factory":
        model = _factory(header["factory"])
    elif kind == "transformers":
        model = transformers_base.build(header["transformers"])
    else:
        user = header["user"]
        if not (isinstance(user, dict) and set(user) == {"class", "edits"} and isinstance(user["class"], str)):
            raise ArtifactError("malformed user-model description")
        if base is None:
            raise ArtifactError(f"this file holds a {user['class']} relative to its base: "
                                f"pass it, ns.load(path, base={user['class']}(...))")
        if type(base).__name__ != user["class"]:
            raise ArtifactError(f"this file holds a {user['class']}, the base given is a {type(base).__name__}")
        model = _meta_copy(base) if meta else base
    apply_edits(model, header.get("edits", []))
    if "dtype" in header:
        if header["dtype"] not in _MODEL_DTYPES:
            raise ArtifactError(f"malformed model dtype {str(header['dtype'])[:40]!r} "
                                f"(one of {', '.join(_MODEL_DTYPES)})")
        model.to(_MODEL_DTYPES[header["dtype"]])
    return model


def _check_tensors(model: nn.Module, entries: list[dict]) -> None:
    """Every stored tensor's name, shape and dtype must be what the architecture holds."""
    expected = model.state_dict()
    names = {e["name"] for e in entries}
    missing, extra = sorted(set(expected) - names), sorted(names - set(expected))
    if missing or extra:
        raise ArtifactError(f"tensors do not fit the architecture (missing {missing[:5]}, unexpected {extra[:5]})")
    for e in entries:
        want = expected[e["name"]]
        if tuple(e["shape"]) != tuple(want.shape):
            raise ArtifactError(f"tensor {e['name']} has shape {tuple(e['shape'])}, the architecture "
                                f"needs {tuple(want.shape)}")
        stored = dtypes.DTYPES[e.get("cast", e["dtype"])][0]
        if stored != want.dtype:
            raise ArtifactError(f"tensor {e['name']} is stored as {stored}, the architecture holds {want.dtype}")


def load(path: str | os.PathLike, *, base: nn.Module | None = None, map_location=None,
         max_bytes: int | None = None, limits: LoadLimits | None = None) -> nn.Module:
    """Rebuild a model saved by `save`, in eval mode, outputs bit-identical.

    base: the user's own model, for a file saved from one (it is modified in place and
    returned). map_location: a device to move the model to. max_bytes: the most bytes
    of tensors this file may make us allocate (default: a limit from the file's size,
    see LoadLimits); raise it for a file you trust.

    >>> model = ns.load("lenet.nshr")
    >>> model = ns.load("mine.nshr", base=MyNet(), map_location="cuda")
    """
    limits = limits or LoadLimits(max_bytes=max_bytes)
    if not Path(path).is_file():
        raise ArtifactError(f"{path}: no such file")
    arc = open_archive(path, max_header_bytes=limits.max_header_bytes, max_depth=limits.max_depth)
    try:
        kind = _check_header(path, arc.header)
        what = "the model this file describes"
        budget = BuildBudget(limits.tensor_bytes(arc.size), limits.modules(arc.size), what)
        with budget:  # 2: on "meta", bounded
            skeleton = _build(kind, arc.header, base, meta=True)
        budget.check_final(skeleton)
        _check_tensors(skeleton, arc.entries)  # 3
        del skeleton
        tensors = arc.decode()  # 4
        with BuildBudget(budget.max_bytes, budget.max_modules, what, meta=False):
            model = _build(kind, arc.header, base, meta=False)
        _check_tensors(model, arc.entries)
        with torch.no_grad():
            model.load_state_dict(tensors, strict=True)
        for m in model.modules():  # runtime modules rebuild derived state (e.g. CSR)
            if hasattr(m, "ns_after_load"):
                m.ns_after_load()
        for m in model.modules():  # modules whose kernel lives in another module (tied / generated)
            if hasattr(m, "ns_link"):
                m.ns_link(model)
    except ArtifactError as e:
        msg = str(e)
        raise ArtifactError(msg if msg.startswith(f"{path}:") else f"{path}: {msg}") from None
    except (Exception, RecursionError) as e:  # noqa: BLE001 - a crafted file we did not foresee: still one error
        raise ArtifactError(f"{path}: cannot rebuild the model ({type(e).__name__}: {str(e)[:200]})") from None
    model.ns_meta = arc.header.get("meta", {})
    if map_location is not None:
        model.to(map_location)
    return model.eval()
