"""The model-factory registry: architectures buildable by name.

`create(name, **kw)` records (name, kw) on the model as `ns_factory`, so an artifact
can rebuild the architecture from the registry and never from an import path read
out of a file. The zoo registers its models here (`netshrink.zoo.models`); users add
their own architectures with `register`. It lives in core so that the artifact, the
methods (a lottery ticket's fresh initialisation) and the zoo all reach it from below.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from netshrink.errors import NetshrinkError

FACTORY_ATTR = "ns_factory"

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def register(name: str, factory: Callable[..., nn.Module]) -> None:
    """Make an architecture buildable by name (and loadable from artifacts).
    Its keyword arguments must be JSON values. Registering a name again replaces it."""
    _FACTORIES[name] = factory


def names() -> list[str]:
    return sorted(_FACTORIES)


def create(name: str, **kw) -> nn.Module:
    """Build a registered model: `create("lstm", hidden_size=64, num_layers=1)`."""
    if name not in _FACTORIES:
        raise NetshrinkError(f"unknown model {name!r}; valid models: {', '.join(names())}")
    try:
        model = _FACTORIES[name](**kw)
    except TypeError as e:
        raise NetshrinkError(f"model {name}: {e}") from None
    setattr(model, FACTORY_ATTR, {"name": name, "kwargs": dict(kw)})
    return model


def factory_of(model: nn.Module) -> dict | None:
    """{"name", "kwargs"} of a model built by `create`, else None."""
    return getattr(model, FACTORY_ATTR, None)
