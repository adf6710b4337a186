"""Every registered method through the public harness (netshrink.testing.check_method):
TOML round trip, bad types and choices refused, the recipe unchanged by a run, the
target reached by a check that fails on the uncompressed model, two runs identical,
save -> load identical. And every runtime module a case leaves in its model, through
check_module (config and state_dict round trips, a meta-device build); every module type
of the architecture registry is also checked on its own (tests/runtime/test_module_harness.py).

The cases (tests/conformance_cases.py) give each method its parameters, a tiny model
and data, and its target check; a registered method without a case fails the suite."""
import pytest
import torch
from torch.utils.data import Subset, TensorDataset

from netshrink.zoo.bert import register_bert_tiny

import netshrink as ns
from netshrink.testing import METHOD_CHECKS, check_method, check_module, runtime_modules
from tests.conformance_cases import CASES

register_bert_tiny()     # the embedding_bits case runs on it

_DATA, _START = {}, {}


def _data(name):
    if name not in _DATA:
        if name == "mnist5k-small":  # 512 real digits: enough for a conv smoke run
            train, test = ns.zoo.data.load("mnist5k", 0)
            _DATA[name] = (Subset(train, range(512)), Subset(test, range(128)))
        elif name == "digit-tokens":  # the 8x8 digits as 64 token ids (intensity 0..16), for embeddings
            tokens = lambda d: TensorDataset((d.tensors[0] * 16).round().long().reshape(-1, 64), d.tensors[1])  # noqa: E731
            train, test = ns.zoo.data.load("digits", 0)
            _DATA[name] = (tokens(train), tokens(test))
        else:
            _DATA[name] = ns.zoo.data.load(name, 0)
    return _DATA[name]


def _start(case):
    """A trained starting point, one per (model, data): the harness deep-copies it."""
    key = (case.model, repr(sorted(case.model_kwargs.items())), case.data)
    if key not in _START:
        torch.manual_seed(0)
        model = ns.zoo.models.create(case.model, **case.model_kwargs)
        ns.fit(model, _data(case.data)[0], ns.TrainConfig(epochs=1), progress=False)
        _START[key] = model
    return _START[key]


def test_every_registered_method_has_a_case():
    missing = sorted(set(ns.all_methods()) - set(CASES))
    assert not missing, f"methods without a conformance case: {missing}"


def _cases():
    for name, cases in CASES.items():
        for i, case in enumerate(cases):
            yield pytest.param(name, case, i, id=f"{name}-{case.id or i}")


@pytest.mark.parametrize("name, case, i", list(_cases()))
def test_method_conforms(name, case, i):
    train, test = _data(case.data)
    # The field probes and the second run once per method; every case runs and saves.
    checks = METHOD_CHECKS if i == 0 else tuple(c for c in METHOD_CHECKS if c not in (
        "bad_types_refused", "bad_choices_refused", "two_runs_identical"))
    done = check_method(name, _start(case), train, params=case.params, target=case.check,
                        vacuous_reason=case.vacuous, finetune=ns.TrainConfig(epochs=case.epochs),
                        example=torch.stack([test[j][0] for j in range(32)]), checks=checks)
    x = torch.stack([test[j][0] for j in range(4)])
    for _, module in runtime_modules(done.model):
        check_module(module, None if hasattr(module, "ns_link") else _module_input(done.model, module, x))


def _module_input(model, module, x):
    """The input `module` sees when `model` runs on x (a forward pre-hook)."""
    seen = []
    h = module.register_forward_pre_hook(lambda m, args: seen.append(args))
    with torch.no_grad():
        model.eval()(x)
    h.remove()
    return seen[0] if seen and all(isinstance(a, torch.Tensor) for a in seen[0]) else None
