"""The conformance harness every method and runtime module passes, built-in or a user's.

    from netshrink.testing import check_method, check_module
    check_method("magnitude", model, train, params={"sparsity": 0.9},
                 target=sparsity_at_least(0.9))            # raises AssertionError naming the check
    check_module(SparseLinear.from_linear(nn.Linear(8, 4)), torch.randn(2, 8))

`check_method` runs these named checks (`METHOD_CHECKS`, in order) and returns a
`Checked` (the checks run, the compressed model, the fitted method):

    toml_round_trip       the step written as TOML reads back as the same method
    bad_types_refused     a value of the wrong type, for every field, is a RecipeError naming it
    bad_choices_refused   a value outside a Literal's choices is a RecipeError listing them
    fields_unchanged      the method given (and its recipe) is unchanged by a run: no learned state on it
    target_reached        `target(model, fitted_method)` holds on the compressed model
    target_can_fail       ... and fails on the model before compression (a check that
                          cannot fail proves nothing); `vacuous_reason` opts out, with a reason
    two_runs_identical    the same recipe on a second copy of the model gives bit-identical weights
    save_load_identical   save -> load gives bit-identical outputs (and the file size save reported)

`check_module` checks one runtime module instance: config round trip (`ns_config` ->
`build` -> the same config), state_dict round trip (a rebuilt module loads the state
and computes the same outputs) and a meta-device build (no memory allocated).

`model` is the starting point (a trained model, deep-copied for every run) and `data`
the training data; `finetune` the budget of the run (one epoch by default).
"""
from __future__ import annotations

import copy
import dataclasses
import tempfile
import typing
from pathlib import Path
from typing import Callable, Literal

import torch
from torch import nn

from netshrink.artifact import architecture
from netshrink.artifact.io import load, save
from netshrink.core.batches import example_inputs, output_tensor
from netshrink.core.fields import hints_of
from netshrink.core.method import Method
from netshrink.core.targets import PerLayer, Targets
from netshrink.errors import NetshrinkError, RecipeError
from netshrink.pipeline import registry
from netshrink.pipeline.compress import run_recipe
from netshrink.pipeline.recipe import Recipe
from netshrink.train.config import TrainConfig

METHOD_CHECKS = ("toml_round_trip", "bad_types_refused", "bad_choices_refused", "fields_unchanged",
                 "target_reached", "target_can_fail", "two_runs_identical", "save_load_identical")
MODULE_CHECKS = ("config_round_trip", "state_dict_round_trip", "meta_build")

Target = Callable[[nn.Module, Method], None]


@dataclasses.dataclass
class Checked:
    """What `check_method` ran and left: the compressed model and the run's fitted method
    (None when no check needed a run)."""

    checks: tuple[str, ...]
    model: nn.Module | None = None
    method: Method | None = None


class ConformanceError(AssertionError):
    """A conformance check failed; the message names the method and the check."""


def _fail(owner: str, check: str, why: str):
    raise ConformanceError(f"{owner}: {check}: {why}")


# ---------------------------------------------------------------- per-field probes
_NOT_A = object()   # "no wrong value can be made for this annotation"


def wrong_value(hint):
    """A value of the wrong type for `hint` (or _NOT_A)."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return 12345 if all(isinstance(a, str) for a in typing.get_args(hint)) else "not-a-choice"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return _NOT_A
    if hint is bool:
        return "yes"
    if hint in (int, float):
        return "three"
    if hint is str:
        return 3
    if hint is PerLayer or origin is PerLayer or origin is dict or hint is dict:
        return 3.0
    if origin in (tuple, list):
        return 3.0
    if hint is Targets:
        return 3.0
    return _NOT_A


def _literal_fields(cls) -> dict[str, tuple]:
    return {k: typing.get_args(h) for k, h in hints_of(cls).items()
            if typing.get_origin(h) is Literal and k in cls.field_names()}


def _check_types(cls, base: dict) -> None:
    hints = hints_of(cls)
    for name in cls.field_names():
        bad = wrong_value(hints[name])
        if bad is _NOT_A:
            continue
        try:
            cls.from_params({**base, name: bad})
        except NetshrinkError as e:
            if name not in str(e):
                _fail(cls.name, "bad_types_refused", f"{name} = {bad!r} refused, but the message does not name "
                                                     f"the field: {e}")
            continue
        _fail(cls.name, "bad_types_refused", f"{name} = {bad!r} (wrong type) was accepted")


def _check_choices(cls, base: dict) -> None:
    for name, choices in _literal_fields(cls).items():
        bad = "__not_a_choice__"
        try:
            cls.from_params({**base, name: bad})
        except RecipeError as e:
            msg = str(e)
            if name not in msg or not all(repr(c) in msg or str(c) in msg for c in choices):
                _fail(cls.name, "bad_choices_refused", f"{name}: the message does not name the field and its "
                                                       f"choices {list(choices)}: {msg}")
            continue
        _fail(cls.name, "bad_choices_refused", f"{name} = {bad!r} (not a choice) was accepted")


# ---------------------------------------------------------------- the run
def _outputs(model: nn.Module, x) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return output_tensor(x.call(model))


def _state_equal(a: nn.Module, b: nn.Module) -> str | None:
    sa, sb = a.state_dict(), b.state_dict()
    if list(sa) != list(sb):
        return f"different state keys ({sorted(set(sa) ^ set(sb))[:4]})"
    for k in sa:
        if not (sa[k].shape == sb[k].shape and torch.equal(sa[k], sb[k])):
            return f"{k} differs"
    return None


def check_method(cls_or_name: str | type[Method], model: nn.Module, data, *, params: dict | None = None,
                 target: Target | None = None, vacuous_reason: str = "",
                 finetune: TrainConfig | None = None, example=None, checks: tuple[str, ...] = METHOD_CHECKS,
                 seed: int = 0) -> Checked:
    """Run the named `checks` on a method (a registered name or a Method class) with
    `params`, compressing deep copies of `model` on `data`. `target(model, fitted)`
    raises AssertionError when the method's target (sparsity, bits, rank ...) is not
    reached; it is required by the target checks. `example`: inputs for the output
    comparisons (default: 16 samples of `data`). The first failure raises
    ConformanceError (an AssertionError) naming the method and the check."""
    cls = registry.get(cls_or_name) if isinstance(cls_or_name, str) else cls_or_name
    params = dict(params or {})
    unknown = [c for c in checks if c not in METHOD_CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; valid: {', '.join(METHOD_CHECKS)}")
    finetune = finetune or TrainConfig(epochs=1)
    method = cls.from_params(params)
    recipe = Recipe.of(method, finetune=finetune)
    x = example_inputs(example if example is not None else data, 16)

    if "toml_round_trip" in checks:
        again = Recipe.from_toml(recipe.to_toml())
        if type(again.methods[0]) is not cls or again.methods[0] != method:
            _fail(cls.name, "toml_round_trip", f"{method!r} came back as {again.methods[0]!r}")
    if "bad_types_refused" in checks:
        _check_types(cls, params)
    if "bad_choices_refused" in checks:
        _check_choices(cls, params)

    needs_run = {"fields_unchanged", "target_reached", "target_can_fail", "two_runs_identical",
                 "save_load_identical"} & set(checks)
    if not needs_run:
        return Checked(tuple(checks))
    before_params = copy.deepcopy(method.params())
    original = copy.deepcopy(model)
    compressed = copy.deepcopy(model)
    torch.manual_seed(seed)
    run = run_recipe(compressed, recipe, data, progress=False)
    fitted = run.methods[0]

    if "fields_unchanged" in checks:
        learned = [k for k in vars(method) if k.endswith("_") and not k.startswith("_")]
        if learned or method.params() != before_params or recipe.methods[0] is not method:
            _fail(cls.name, "fields_unchanged", f"the recipe's method changed in the run (learned state {learned})")
        if fitted is method:
            _fail(cls.name, "fields_unchanged", "the run worked on the recipe's own method, not a copy")
    if "target_reached" in checks or "target_can_fail" in checks:
        if target is None:
            _fail(cls.name, "target_reached", "no target check given (target=...): what does the method promise?")
        if "target_reached" in checks:
            try:
                target(compressed, fitted)
            except AssertionError as e:
                _fail(cls.name, "target_reached", str(e) or "the target check failed")
        if "target_can_fail" in checks and not vacuous_reason:
            try:
                target(original, fitted)
            except AssertionError:
                pass
            else:
                _fail(cls.name, "target_can_fail", "the target check also passes on the uncompressed model; "
                                                   "it cannot fail (or give vacuous_reason=...)")
    if "two_runs_identical" in checks:
        # The same recipe object again, on a fresh copy: bit-identical weights. (A measured
        # runtime choice, runtime = "auto", may pick other kernels in the second run: then
        # the outputs must agree to float rounding.)
        second = copy.deepcopy(model)
        torch.manual_seed(seed)
        run_recipe(second, recipe, data, progress=False)
        same_modules = [type(m) for m in compressed.modules()] == [type(m) for m in second.modules()]
        if same_modules:
            diff = _state_equal(compressed, second)
            if diff is not None:
                _fail(cls.name, "two_runs_identical", f"a second run of the same recipe differs: {diff}")
        elif not torch.allclose(_outputs(compressed, x), _outputs(second, x), rtol=1e-4, atol=1e-5):
            _fail(cls.name, "two_runs_identical", "a second run of the same recipe computes other outputs")
    if "save_load_identical" in checks:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "m.nshr"
            size = save(compressed, path)
            if size != path.stat().st_size:
                _fail(cls.name, "save_load_identical", f"save reported {size} bytes, the file has {path.stat().st_size}")
            loaded = load(path)
        if not torch.equal(_outputs(compressed, x), _outputs(loaded, x)):
            _fail(cls.name, "save_load_identical", "save -> load changed the outputs")
    return Checked(tuple(checks), compressed, fitted)


# ---------------------------------------------------------------- runtime modules
def runtime_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every netshrink-built (non-torch) module type in `model`."""
    return [(n, m) for n, m in model.named_modules()
            if architecture.config_of(m) is not None and not type(m).__module__.startswith("torch.")]


def check_module(module: nn.Module, example=None, *, checks: tuple[str, ...] = MODULE_CHECKS) -> tuple[str, ...]:
    """The artifact contract of one runtime module instance (see the module docstring).
    `example`: inputs (a tensor or a tuple of tensors) for the output comparison; without
    it only the state is compared."""
    name = architecture.type_name(module)
    cfg = architecture.config_of(module)
    if cfg is None:
        _fail(name, "config_round_trip", "not a registered module type (artifact.register_module)")
    if "config_round_trip" in checks:
        rebuilt = architecture.build(name, copy.deepcopy(cfg))
        if architecture.config_of(rebuilt) != cfg:
            _fail(name, "config_round_trip", f"{cfg} rebuilt as {architecture.config_of(rebuilt)}")
    if "state_dict_round_trip" in checks:
        rebuilt = architecture.build(name, copy.deepcopy(cfg))
        try:
            rebuilt.load_state_dict(module.state_dict())
        except RuntimeError as e:
            _fail(name, "state_dict_round_trip", f"a rebuilt module does not take the state: {e}")
        diff = _state_equal(module, rebuilt)
        if diff is not None:
            _fail(name, "state_dict_round_trip", diff)
        # (a module that reads a tensor shared elsewhere in its model, `ns_link`, has
        # no outputs of its own)
        if example is not None and not hasattr(module, "ns_link"):
            x = example_inputs(example)
            if not torch.equal(_outputs(module, x), _outputs(rebuilt, x)):
                _fail(name, "state_dict_round_trip", "the rebuilt module computes other outputs")
    if "meta_build" in checks:
        with torch.device("meta"):
            m = architecture.build(name, copy.deepcopy(cfg))
        real = [k for k, t in [*m.named_parameters(), *m.named_buffers()] if not t.is_meta]
        if real:
            _fail(name, "meta_build", f"built on the meta device, {real[:3]} still hold memory")
    return tuple(checks)


def field_probes(cls: type[Method]) -> dict[str, object]:
    """field -> the wrong-typed value `bad_types_refused` tries (for a user's own tests)."""
    hints = hints_of(cls)
    return {f.name: wrong_value(hints[f.name]) for f in dataclasses.fields(cls)
            if f.init and wrong_value(hints[f.name]) is not _NOT_A}
