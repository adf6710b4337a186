"""Architecture edits: what turns a base model (factory, transformers config, or the
user's own) into the compressed one, as JSON.

    {"path": "fc1", "type": "Linear", "config": {...}}    replace a module
    {"path": "encoder.layer.0.attention.self", "attrs": {"num_attention_heads": 2}}

An edit's path must name a module the model already has (the diff walks the model in
order, so a replaced container's children exist as placeholders before they are
replaced). Attribute edits set only the size attributes some modules read in forward
(head counts, head sizes) — integers, on attributes that are already integers — so a
file cannot change a computation (`padding_mode`, `eps`, `training`) behind a module's
config: a module whose other settings differ is written as a replacement, whose config
is checked against the type's schema.
"""
from __future__ import annotations

from torch import nn

from netshrink.artifact.architecture import MAX_DIM, build, config_of, is_container, type_name
from netshrink.core.submodules import find_submodule, set_submodule
from netshrink.errors import ArtifactError

# Size attributes structured pruning changes, by the names torch and transformers use.
SIZE_ATTRS = {"num_attention_heads", "all_head_size", "attention_head_size", "num_heads", "head_dim",
              "embed_dim", "num_key_value_heads", "num_key_value_groups", "n_heads", "n_head", "inner_dim",
              "split_size", "hidden_size", "intermediate_size", "kdim", "vdim"}


def allow_attribute(name: str) -> None:
    """Let attribute edits set the integer attribute `name` (for a user's module that
    reads a size attribute in forward, as HF attention reads num_attention_heads)."""
    SIZE_ATTRS.add(name)


def _scalar_attrs(m: nn.Module) -> dict:
    return {k: v for k, v in vars(m).items()
            if not k.startswith("_") and k != "training" and type(v) in (bool, int, float, str)}


def _same_type(a: nn.Module, b: nn.Module) -> bool:
    """Same class; for modules under torch.nn.utils.parametrize (which gives each instance
    its own ParametrizedX subclass, e.g. weight_norm built by the model's constructor): the
    same original class and the same parametrisation kinds."""
    if type(a) is type(b):
        return True
    from torch.nn.utils import parametrize

    if not (parametrize.is_parametrized(a) and parametrize.is_parametrized(b)):
        return False
    kinds = lambda m: {k: [type(p) for p in m.parametrizations[k]] for k in m.parametrizations.keys()}
    return type(a).__bases__ == type(b).__bases__ and kinds(a) == kinds(b)


def diff_edits(fresh: nn.Module, model: nn.Module, *, where: str = "the base") -> list[dict]:
    """The edits that turn `fresh` (the base, modified in place to match) into
    `model`'s architecture. Raises ArtifactError for a difference no edit can express."""
    edits = []
    for path, mod in model.named_modules():
        cur = find_submodule(fresh, path)
        cfg = config_of(mod)
        if cur is not None and _same_type(cur, mod) and config_of(cur) == cfg:
            want, have = _scalar_attrs(mod), _scalar_attrs(cur)
            changed = {k: v for k, v in want.items() if k in have and have[k] != v}
            if not changed:
                continue
            bad = sorted(k for k, v in changed.items()
                         if k not in SIZE_ATTRS or type(v) is not int or type(have[k]) is not int)
            if bad:
                raise ArtifactError(f"cannot save: attribute(s) {bad} of module {path or '(root)'!r} differ from "
                                    f"{where}'s and are not sizes an artifact records (see "
                                    "netshrink.artifact.allow_attribute)")
            for k, v in changed.items():
                setattr(cur, k, v)
            edits.append({"path": path, "attrs": changed})
            continue
        if not path:
            raise ArtifactError(f"cannot save: the model is a {type_name(mod)}, {where} is a {type_name(cur)}")
        if cfg is None:
            raise ArtifactError(f"cannot save: module {path!r} of type {type_name(mod)} differs from {where}, and "
                                "it is not a registered module type (netshrink.artifact.register_module)")
        if find_submodule(fresh, path.rpartition(".")[0]) is None:
            raise ArtifactError(f"cannot save: module {path!r} has no parent in {where}")
        set_submodule(fresh, path, build(type_name(mod), cfg))
        edits.append({"path": path, "type": type_name(mod), "config": cfg})
    return edits


def full_edits(model: nn.Module) -> list[dict]:
    """Edits that rebuild every buildable leaf module of `model` whatever the base has
    there (for a user's model saved without its base): containers are kept as the
    base has them."""
    out = []
    for path, mod in model.named_modules():
        if not path or is_container(mod):
            continue
        cfg = config_of(mod)
        if cfg is not None and not any(path.startswith(e["path"] + ".") for e in out):
            out.append({"path": path, "type": type_name(mod), "config": cfg})
    return out


def _target(model: nn.Module, path: object) -> nn.Module:
    """The module at `path` ("" is the root; None for a new child), or ArtifactError."""
    if not isinstance(path, str) or len(path) > 4096:
        raise ArtifactError(f"architecture edit has a malformed path {path!r}")
    parent, _, leaf = path.rpartition(".")
    up = find_submodule(model, parent)
    if path and (up is None or (leaf not in up._modules and (hasattr(up, leaf) or not leaf.isidentifier()))):
        # a new child is fine; an attribute that is not a module ("training", "fc1.weight") is not
        raise ArtifactError(f"architecture edit names {path!r}, which is not a module of the model")
    return find_submodule(model, path)


def _apply_attrs(model: nn.Module, e: dict) -> None:
    target = _target(model, e["path"])
    attrs = e["attrs"]
    if target is None:
        raise ArtifactError(f"attribute edit names a missing module {e['path']!r}")
    if not isinstance(attrs, dict) or not attrs:
        raise ArtifactError(f"malformed attribute edit {e!r}")
    for k, v in attrs.items():
        old = vars(target).get(k)
        if k not in SIZE_ATTRS or type(v) is not int or type(old) is not int or not 0 <= v <= MAX_DIM:
            raise ArtifactError(f"attribute edit {e['path'] or '(root)'}.{k} = {v!r} is not allowed "
                                "(only integer size attributes the module already has)")
        setattr(target, k, v)


def apply_edits(model: nn.Module, edits: object) -> None:
    """Apply `edits` (read from a file: every field checked) to `model` in place."""
    if not isinstance(edits, list):
        raise ArtifactError("malformed architecture edits (not a list)")
    for e in edits:
        if isinstance(e, dict) and set(e) == {"path", "attrs"}:
            _apply_attrs(model, e)
            continue
        if not (isinstance(e, dict) and set(e) == {"path", "type", "config"}):
            raise ArtifactError(f"malformed architecture edit {str(e)[:200]}")
        _target(model, e["path"])
        if not e["path"]:
            raise ArtifactError("an architecture edit cannot replace the whole model")
        set_submodule(model, e["path"], build(e["type"], e["config"]))
