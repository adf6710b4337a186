"""low_rank / sketch as recipe steps: validation, composition, honest counts, data-aware wins."""
import copy

import pytest
import torch

import netshrink as ns
from netshrink.errors import RecipeError, TargetError
from netshrink.measure.counts import param_counts
from netshrink.measure.flops import count_flops
from netshrink.runtime.low_rank import LowRankLinear


_TRAINED = {}


def _trained(digits):
    """LeNet-300-100 (64 inputs) after one epoch on digits: trained once, copied."""
    if "m" not in _TRAINED:
        torch.manual_seed(0)
        m = ns.zoo.models.create("lenet300_100", in_features=64)
        ns.fit(m, digits[0], ns.TrainConfig(epochs=1), progress=False)
        _TRAINED["m"] = m
    return copy.deepcopy(_TRAINED["m"])


@pytest.mark.parametrize("name, params, field", [
    ("low_rank", {"ratio": 0.0}, "ratio"), ("low_rank", {"energy": 1.5}, "energy"),
    ("low_rank", {"rank": 0}, "rank"), ("low_rank", {"damp": -1.0}, "damp"),
    ("sketch", {"mode": "rank", "oversample": -1}, "oversample"), ("sketch", {"power_iters": -2}, "power_iters"),
])
def test_bad_values_name_the_field(name, params, field):
    with pytest.raises(RecipeError, match=field):
        ns.create(name, **params)


def test_sketch_refuses_modes_that_need_the_whole_spectrum():
    with pytest.raises(RecipeError, match="mode"):
        ns.create("sketch", mode="energy")


def test_explicit_unsupported_target_is_an_error():
    m = ns.zoo.models.create("lstm", input_size=8, hidden_size=16)
    with pytest.raises(TargetError, match="rnn"):
        ns.create("low_rank", targets=["rnn.bias_ih_l0"]).prepare(m, ns.core.context.PrepareContext())


def test_data_aware_beats_plain_svd_before_finetuning(digits):
    train, test = digits
    base = _trained(digits)
    x = torch.stack([test[i][0] for i in range(len(test))])
    with torch.no_grad():
        y = base(x)
    errs = {}
    for aware in (False, True):
        m = _trained(digits)
        ns.create("low_rank", mode="ratio", ratio=0.1, data_aware=aware).prepare(
            m, ns.core.context.PrepareContext(data=train))
        with torch.no_grad():
            errs[aware] = float((m(x) - y).norm() / y.norm())
    assert errs[True] < errs[False]


def test_low_rank_composes_with_pruning_and_saves(digits, tmp_path):
    train, test = digits
    m = _trained(digits)
    recipe = ns.Recipe.from_toml("""
[finetune]
epochs = 1
[[step]]
method = "low_rank"
mode = "budget"
ratio = 0.3
[[step]]
method = "magnitude"
sparsity = 0.5
runtime = "dense"
""")
    ns.compress_(m, recipe, data=train, progress=False)
    lrs = [mod for mod in m.modules() if isinstance(mod, LowRankLinear)]
    assert lrs
    for mod in lrs:                                       # the factors themselves were pruned
        params, nonzeros = param_counts(mod)
        assert nonzeros <= 0.55 * params
    ns.save(m, tmp_path / "m.nshr")
    x = torch.stack([test[i][0] for i in range(16)])
    assert torch.equal(ns.load(tmp_path / "m.nshr")(x), m.eval()(x))


def test_counts_and_flops_are_those_of_the_factors(digits):
    m = _trained(digits)
    ns.create("low_rank", mode="rank", rank=8).prepare(m, ns.core.context.PrepareContext())
    params, _ = param_counts(m)
    assert params == 8 * (64 + 300) + 300 + 8 * (300 + 100) + 100 + 8 * (100 + 10) + 10
    dense, effective = count_flops(m, torch.zeros(1, 1, 8, 8))
    assert dense == effective == 2 * 8 * ((64 + 300) + (300 + 100) + (100 + 10))
