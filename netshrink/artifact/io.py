"""save / load a compressed model as a .nshr artifact.

The file holds the model's zoo factory (name + JSON kwargs), the architecture edits
compression made (see core.modules), and the state tensors, each stored by the
smallest lossless encoding the codec finds. Loading rebuilds the architecture from
the registry: nothing in the file is ever executed.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

from netshrink.core.modules import apply_edits, check_size, diff_edits
from netshrink.errors import ArtifactError, NetshrinkError
from netshrink.zoo import models as zoo_models

FORMAT = "netshrink-model"
FORMAT_VERSION = 1


def _check_savable(model: nn.Module) -> dict:
    factory = zoo_models.factory_of(model)
    if factory is None:
        raise NetshrinkError("cannot save: the model was not built by a registered factory; build it with "
                             "ns.zoo.models.create (after ns.zoo.models.register for your own architecture)")
    left = [n for n, m in model.named_modules() if parametrize.is_parametrized(m)]
    if left:
        raise NetshrinkError(f"cannot save: {left} still carry re-parametrisations; finish the "
                             "compression (session.finish() / compress_) first")
    return factory


def save(model: nn.Module, path: str | os.PathLike, *, meta: dict | None = None,
         hints: dict[str, str] | None = None) -> int:
    """Write `model` to `path` atomically; returns the file's size in bytes.

    >>> ns.save(model, "lenet.nshr")
    """
    from netshrink.codec import write_archive

    factory = _check_savable(model)
    fresh = zoo_models.create(factory["name"], **factory["kwargs"])
    edits = diff_edits(fresh, model)
    header = {"format": FORMAT, "version": FORMAT_VERSION, "factory": factory, "edits": edits,
              "meta": meta or {}}
    tensors = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return write_archive(path, header, tensors, hints=hints)


def load(path: str | os.PathLike) -> nn.Module:
    """Rebuild a model saved by `save`, in eval mode, outputs bit-identical.

    >>> model = ns.load("lenet.nshr")
    """
    if not Path(path).is_file():
        raise ArtifactError(f"{path}: no such file")
    from netshrink.codec import read_archive

    header, tensors = read_archive(path)
    if header.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a netshrink model (format {header.get('format')!r})")
    if header.get("version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: model format version {header.get('version')!r} is not supported "
                            f"(this netshrink reads version {FORMAT_VERSION})")
    factory = header.get("factory")
    if not (isinstance(factory, dict) and isinstance(factory.get("name"), str)
            and isinstance(factory.get("kwargs"), dict)):
        raise ArtifactError(f"{path}: malformed model factory {factory!r}")
    try:
        check_size(lambda: zoo_models.create(factory["name"], **factory["kwargs"]), f"model {factory['name']}",
                   factory["kwargs"])
        model = zoo_models.create(factory["name"], **factory["kwargs"])
    except NetshrinkError as e:
        raise ArtifactError(f"{path}: {e}") from None
    edits = header.get("edits", [])
    if not isinstance(edits, list):
        raise ArtifactError(f"{path}: malformed architecture edits")
    try:
        apply_edits(model, edits)
    except ArtifactError as e:
        raise ArtifactError(f"{path}: {e}") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ArtifactError(f"{path}: tensors do not fit the architecture (missing {missing[:5]}, "
                            f"unexpected {extra[:5]})")
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise ArtifactError(f"{path}: tensor {k} has shape {tuple(v.shape)}, the architecture "
                                f"needs {tuple(expected[k].shape)}")
    with torch.no_grad():
        model.load_state_dict(tensors, strict=True)
    for m in model.modules():  # runtime modules rebuild derived state (e.g. CSR)
        if hasattr(m, "ns_after_load"):
            m.ns_after_load()
    for m in model.modules():  # modules whose kernel lives in another module (tied / generated)
        if hasattr(m, "ns_link"):
            m.ns_link(model)
    model.ns_meta = header.get("meta", {})
    return model.eval()


