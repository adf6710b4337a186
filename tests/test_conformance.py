"""Every registered method: prepare → train steps → finish → save → load → the same
outputs, bit for bit; and the method's target is reached."""
import pytest
import torch
from torch.utils.data import Subset

import netshrink as ns
from tests.conformance_cases import CASES

_DATA = {}


def _data(name):
    if name not in _DATA:
        if name == "mnist5k-small":  # 512 real digits: enough for a conv smoke run
            train, test = ns.zoo.data.load("mnist5k", 0)
            _DATA[name] = (Subset(train, range(512)), Subset(test, range(128)))
        else:
            _DATA[name] = ns.zoo.data.load(name, 0)
    return _DATA[name]


def test_every_registered_method_has_a_case():
    missing = sorted(set(ns.all_methods()) - set(CASES))
    assert not missing, f"methods without a conformance case: {missing}"


def _cases():
    for name, cases in CASES.items():
        for i, case in enumerate(cases):
            yield pytest.param(name, case, id=f"{name}-{case.id or i}")


@pytest.mark.parametrize("name, case", list(_cases()))
def test_method_conforms(name, case, tmp_path):
    train, test = _data(case.data)
    torch.manual_seed(0)
    model = ns.zoo.models.create(case.model, **case.model_kwargs)
    ns.fit(model, train, ns.TrainConfig(epochs=1), progress=False)  # a trained starting point
    method = ns.create(name, **case.params)
    recipe = ns.Recipe.of(method, finetune=ns.TrainConfig(epochs=case.epochs))
    ns.compress_(model, recipe, data=train, progress=False)

    if case.check is not None:
        case.check(model, method)
    x = torch.stack([test[i][0] for i in range(32)])
    path = tmp_path / "m.nshr"
    size = ns.save(model, path)
    assert size == path.stat().st_size
    loaded = ns.load(path)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x)), "save → load changed the outputs"
    assert ns.evaluate(loaded, test) == ns.evaluate(model, test)
