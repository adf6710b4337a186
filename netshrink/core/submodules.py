"""Addressing submodules by dotted path (the names of `model.named_modules()`)."""
from __future__ import annotations

from torch import nn


def set_submodule(root: nn.Module, path: str, module: nn.Module) -> None:
    """Replace (or add) the submodule at dotted `path`, e.g. "stages.0.conv1"."""
    parent, _, leaf = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, leaf, module)


def find_submodule(root: nn.Module, path: str) -> nn.Module | None:
    """The submodule at `path`, or None when there is none ("" is the root)."""
    if not path:
        return root
    try:
        return root.get_submodule(path)
    except AttributeError:
        return None
