"""The command line's `--model`, `--weights`, `--data`, `--loss`, `--metric`: a user's own
code and files, never only the zoo.

- `--model NAME`: a zoo model (its cached baseline); `--model package.module:factory`: the
  user's code, imported by its module name (it must be importable: installed, or on
  PYTHONPATH / the current folder) and called with no arguments; never a file path, so
  nothing is executed from a path given on the command line. `--model hf:DIR`: a local
  transformers folder (config.json + weights), loaded with `local_files_only=True`, no
  remote code.
- `--weights FILE`: a safetensors file, or a state_dict read with
  `torch.load(weights_only=True)` (which refuses pickled code), loaded strictly.
- `--data NAME`: a zoo dataset (train / test split of `--fold`); `--data package.module:function`:
  the function returns a Dataset, a DataLoader, a list of batches, or a pair (train, test).
- `--loss`, `--metric`: a name (train/losses.py, measure/metrics.py) or `package.module:function`.
"""
from __future__ import annotations

import importlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from netshrink.artifact import load
from netshrink.errors import NetshrinkError
from netshrink.measure.metrics import METRICS
from netshrink.train.losses import LOSSES
from netshrink.zoo import data as zoo_data
from netshrink.zoo.baseline import baseline

_SPEC = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")


def is_import_spec(s: str | None) -> bool:
    return bool(s) and bool(_SPEC.match(s))


def import_object(spec: str, what: str) -> Any:
    """`package.module:attr` -> the object. A path (`a/b.py:f`) is refused: code is only
    imported by its module name."""
    if not is_import_spec(spec):
        raise NetshrinkError(f"{what} {spec!r}: give package.module:name (a module importable by its name, "
                             "not a file path)")
    mod_name, attr = spec.split(":")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:   # like `python -m`: the current folder
        sys.path.insert(0, "")
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as e:
        raise NetshrinkError(f"{what} {spec!r}: cannot import {mod_name}: {e}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise NetshrinkError(f"{what} {spec!r}: {mod_name} has no {attr!r}")
        obj = getattr(obj, part)
    return obj


@dataclass
class UserModel:
    """A model from `--model` that is not in the zoo, and how to build its base again."""

    model: nn.Module
    build: Callable[[], nn.Module]   # a fresh copy (the base for `load(..., base=)`)
    kind: str                        # "factory" | "transformers"


def user_model(spec: str, weights: str | None = None) -> UserModel:
    """The model of `--model package.module:factory` or `--model hf:DIR`, with `--weights`."""
    if spec.startswith("hf:"):
        build = _hf_builder(spec[3:])
        kind = "transformers"
    else:
        factory = import_object(spec, "--model")
        if not callable(factory):
            raise NetshrinkError(f"--model {spec!r} is not callable: give a function or class that builds the model")

        def build():
            m = factory()
            if not isinstance(m, nn.Module):
                raise NetshrinkError(f"--model {spec!r} returned a {type(m).__name__}, not a torch nn.Module")
            return m
        kind = "factory"

    def with_weights():
        m = build()
        if weights:
            load_weights(m, weights)
        return m.eval()
    return UserModel(with_weights(), with_weights, kind)


def _hf_builder(folder: str) -> Callable[[], nn.Module]:
    d = Path(folder)
    if not (d / "config.json").is_file():
        raise NetshrinkError(f"--model hf:{folder}: no config.json there (a local transformers folder is needed)")
    import transformers

    config = transformers.AutoConfig.from_pretrained(d, local_files_only=True, trust_remote_code=False)
    arch = (getattr(config, "architectures", None) or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None:
        cls = transformers.AutoModel

    def build():
        try:
            return cls.from_pretrained(d, local_files_only=True, trust_remote_code=False)
        except (OSError, ValueError) as e:
            raise NetshrinkError(f"--model hf:{folder}: {str(e).splitlines()[0]}") from None
    return build


def load_weights(model: nn.Module, path: str) -> None:
    """`--weights`: safetensors, or a state_dict read with torch.load(weights_only=True)."""
    p = Path(path)
    if not p.is_file():
        raise NetshrinkError(f"--weights {path}: no such file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:   # a pickle with code, a corrupt file: refused, never run
        raise NetshrinkError(f"--weights {path}: cannot read it as a state_dict: {str(e).splitlines()[0][:200]}") \
            from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise NetshrinkError(f"--weights {path}: holds a {type(state).__name__}, not a state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise NetshrinkError(f"--weights {path} does not fit the model: {str(e).splitlines()[0][:300]}") from None


def user_data(spec: str) -> tuple[Any, Any]:
    """(train, test) from `--data package.module:function`; one object is used for both."""
    fn = import_object(spec, "--data")
    out = fn() if callable(fn) else fn
    if isinstance(out, tuple) and len(out) == 2 and not isinstance(out[0], torch.Tensor):
        return out
    return out, out


def loss_option(spec: str | None):
    """A loss name, or the callable of `package.module:function`; None: the recipe's own."""
    if spec is None or spec in LOSSES:
        return spec
    if is_import_spec(spec):
        return import_object(spec, "--loss")
    raise NetshrinkError(f"--loss {spec!r}: one of {', '.join(LOSSES)}, or package.module:function")


def metric_option(spec: str | None):
    if spec is None:
        return "auto"
    if spec in METRICS:
        return spec
    if is_import_spec(spec):
        return import_object(spec, "--metric")
    raise NetshrinkError(f"--metric {spec!r}: one of {', '.join(METRICS)}, or package.module:function")


def is_user_model(spec: str | None) -> bool:
    """Zoo names never hold a ':'; anything with one is the user's (and checked as such)."""
    return bool(spec) and ":" in spec


def model_and_data(model: str | None, weights: str | None, input: str | None, data: str, fold: int):
    """(the model to compress, training data, held-out data) from `--model` / `--weights` /
    `--input` / `--data` / `--fold`: a zoo baseline, the user's model (code or hf folder,
    with weights), or a .nshr file (built on the user's model where one is given)."""
    user = user_model(model, weights) if is_user_model(model) else None
    if input is None and model is None:
        raise NetshrinkError("give --model (a zoo baseline or your own model) or --input (a .nshr file)")
    if input is not None and model is not None and user is None:
        raise NetshrinkError("--input with a zoo --model: give one of them (the file names its zoo model)")
    train, test = user_data(data) if is_import_spec(data) else zoo_data.load(data, fold)
    if input:
        return load(input, base=user.build() if user else None), train, test
    return (user.model if user else baseline(model, data, fold)), train, test
