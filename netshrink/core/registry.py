"""The explicit registry of methods, by the name used in TOML and on the CLI.

Built-in methods are listed here by hand (no registration by import side effect);
users add their own with `register`.
"""
from __future__ import annotations

from netshrink.core.method import Method
from netshrink.errors import RecipeError

_USER: dict[str, type[Method]] = {}


def _builtin() -> list[type[Method]]:
    from netshrink.methods.pruning import Magnitude, RandomPrune
    from netshrink.methods.pruning import GradualMagnitude
    from netshrink.methods.lottery import EarlyBird, Lottery
    from netshrink.methods.saliency import OBD, Taylor
    from netshrink.methods.patterns import BlockPrune, NMPrune
    pruning_family = [GradualMagnitude, Lottery, EarlyBird, OBD, Taylor, BlockPrune, NMPrune]
    from netshrink.methods.quantize import QAT, Binary, Quantize, Ternary
    from netshrink.methods.share import KMeans, SoftSharing
    from netshrink.methods.hashing import Hashing
    from netshrink.methods.frequency import FrequencyPack
    from netshrink.methods.hyper import Hypernetwork, Tie
    from netshrink.methods.depth import StochasticDepth
    generated = [Hashing, FrequencyPack, Hypernetwork, Tie, StochasticDepth]
    from netshrink.methods.distill import Distill, Hints, Mimic
    from netshrink.methods.factorize import LowRank, Sketch
    generated += [Distill, Mimic, Hints, LowRank, Sketch]
    from netshrink.methods.structured import ChannelPrune, DepthPrune
    generated += [ChannelPrune, DepthPrune]
    from netshrink.methods.l0 import L0
    from netshrink.methods.lassonet import LassoNet
    from netshrink.methods.regularize import L1, DropNeuron, GroupLasso
    from netshrink.methods.variational import VariationalDropout
    regularize = [L1, GroupLasso, DropNeuron, L0, VariationalDropout, LassoNet]  # issue 5

    return [Magnitude, RandomPrune, Quantize, QAT, Binary, Ternary, KMeans, SoftSharing] + generated + pruning_family + regularize


def register(cls: type[Method]) -> type[Method]:
    """Register a user method class (usable as a decorator)."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no `name`")
    _USER[cls.name] = cls
    return cls


def all_methods() -> dict[str, type[Method]]:
    out = {cls.name: cls for cls in _builtin()}
    out.update(_USER)
    return dict(sorted(out.items()))


def get(name: str) -> type[Method]:
    methods = all_methods()
    if name not in methods:
        raise RecipeError(f"unknown method {name!r}; valid methods: {', '.join(methods)}")
    return methods[name]


def create(name: str, **params) -> Method:
    """`create("magnitude", sparsity=0.9)`, validated like a recipe step."""
    return get(name).from_params(params)
