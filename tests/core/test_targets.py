import pytest

from netshrink import Targets, select
from netshrink.errors import TargetError
from netshrink.zoo import models


def names(sites):
    return [s.name for s in sites]


def test_default_selects_layer_weights_not_biases():
    m = models.create("lenet5")
    assert names(select(m)) == ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.weight"]


def test_regex_include_and_exclude():
    m = models.create("lenet300_100")
    t = Targets(include=["re:fc.\\.weight"], exclude=["fc3.weight"])
    assert names(select(m, t)) == ["fc1.weight", "fc2.weight"]


def test_type_pattern_selects_weights_of_that_type():
    m = models.create("lenet5")
    assert names(select(m, Targets(include=["type:Conv2d"]))) == ["conv1.weight", "conv2.weight"]


def test_recurrent_weights_selected():
    m = models.create("lstm", input_size=4, hidden_size=8, num_layers=2)
    got = names(select(m))
    assert "rnn.weight_ih_l0" in got and "rnn.weight_hh_l1" in got and "fc.weight" in got
    assert not any("bias" in n for n in got)


def test_pattern_matching_nothing_is_an_error_naming_it():
    m = models.create("lenet300_100")
    with pytest.raises(TargetError, match="fc9.weight"):
        select(m, Targets(include=["fc9.weight"]))


def test_bad_regex_is_a_clear_error():
    with pytest.raises(TargetError, match="regular expression"):
        Targets(include=["re:(unclosed"])


def test_from_value_shapes():
    assert Targets.from_value("fc1.weight").include == ["fc1.weight"]
    assert Targets.from_value({"include": ["a"], "exclude": "b"}).exclude == ["b"]
    with pytest.raises(TargetError):
        Targets.from_value({"inclde": ["a"]})
