"""Students derived from a teacher: the same zoo family, narrower and/or shallower.

`derive_student(teacher, width=0.1, drop_layers=1)` reads the teacher's zoo factory
and builds a zoo model with scaled widths, so the student saves and loads like any
zoo model (for LeNet-5, whose widths are fixed, the narrower layers are module edits
that the artifact records automatically).

    >>> teacher = ns.zoo.baseline("lenet300_100", "mnist5k", fold=0)
    >>> student = derive_student(teacher, width=0.1, drop_layers=1)   # MLP 784-30-10
"""
from __future__ import annotations

from torch import nn

from netshrink.core import factories
from netshrink.errors import NetshrinkError


def _w(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


def student_spec(name: str, kwargs: dict, *, width: float = 0.5, drop_layers: int = 0) -> tuple[str, dict]:
    """(zoo name, kwargs) of the student of a zoo model `name(**kwargs)`.

    width scales every hidden width; drop_layers removes hidden layers (MLPs), blocks
    per stage (ResNet / DenseNet, at least 1 left) or recurrent layers (LSTM / GRU)."""
    if not width > 0:
        raise NetshrinkError(f"student width must be > 0, got {width}")
    if not (isinstance(drop_layers, int) and drop_layers >= 0):
        raise NetshrinkError(f"drop_layers must be an integer >= 0, got {drop_layers!r}")
    kw = dict(kwargs)
    if name in ("lenet300_100", "mlp"):
        hidden = [300, 100] if name == "lenet300_100" else list(kw.pop("hidden", (256, 128)))
        if drop_layers > len(hidden):
            raise NetshrinkError(f"{name} has {len(hidden)} hidden layers; cannot drop {drop_layers}")
        kw["hidden"] = [_w(h, width) for h in hidden[: len(hidden) - drop_layers]]
        return "mlp", kw
    if name == "resnet_small":
        kw["widths"] = [_w(c, width) for c in kw.get("widths", (16, 32, 64))]
        kw["blocks"] = [max(1, b - drop_layers) for b in kw.get("blocks", (2, 2, 2))]
        return name, kw
    if name == "densenet_small":
        kw["growth"] = _w(kw.get("growth", 12), width)
        kw["init_channels"] = _w(kw.get("init_channels", 24), width)
        kw["blocks"] = [max(1, b - drop_layers) for b in kw.get("blocks", (4, 4, 4))]
        return name, kw
    if name in ("lstm", "gru"):
        kw["hidden_size"] = _w(kw.get("hidden_size", 128), width)
        kw["num_layers"] = max(1, kw.get("num_layers", 2) - drop_layers)
        return name, kw
    raise NetshrinkError(f"cannot derive a student of {name!r} by kwargs; derivable: lenet300_100, mlp, "
                         "resnet_small, densenet_small, lstm, gru (and lenet5 through derive_student)")


def _narrow_lenet5(kwargs: dict, width: float) -> nn.Module:
    """LeNet-5 with conv 20·w, conv 50·w, FC 500·w: the zoo model with its four layers
    replaced by narrower ones (save records them as module edits)."""
    net = factories.create("lenet5", **kwargs)
    c1, c2, f1 = _w(20, width), _w(50, width), _w(500, width)
    side2 = net.fc1.in_features // net.conv2.out_channels       # spatial positions after pool 2
    net.conv1 = nn.Conv2d(net.conv1.in_channels, c1, 5)
    net.conv2 = nn.Conv2d(c1, c2, 5)
    net.fc1 = nn.Linear(c2 * side2, f1)
    net.fc2 = nn.Linear(f1, net.fc2.out_features)
    return net


def derive_student(teacher: nn.Module, *, width: float = 0.5, drop_layers: int = 0) -> nn.Module:
    """A fresh (untrained) zoo student of the zoo model `teacher`; seed torch first
    for reproducible initial weights."""
    factory = factories.factory_of(teacher)
    if factory is None:
        raise NetshrinkError("derive_student: the teacher was not built by a zoo factory "
                             "(ns.zoo.models.create, or core.factories.create); build the student with create() directly")
    if factory["name"] == "lenet5":
        if drop_layers:
            raise NetshrinkError("derive_student: LeNet-5 students are narrower, not shallower (drop_layers = 0)")
        if not width > 0:
            raise NetshrinkError(f"student width must be > 0, got {width}")
        return _narrow_lenet5(factory["kwargs"], width)
    name, kw = student_spec(factory["name"], factory["kwargs"], width=width, drop_layers=drop_layers)
    return factories.create(name, **kw)
