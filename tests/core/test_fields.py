"""Hyperparameters: checked once from their annotations (TOML and Python alike), one
vocabulary with old names answered, per-layer maps, no run state on a recipe."""
import dataclasses
import typing

import pytest
import torch

import netshrink as ns
from netshrink.errors import RecipeError, TargetError
from netshrink.methods.pruning import Magnitude
from tests.helpers import tiny_mlp


@pytest.mark.parametrize("build", [
    lambda: ns.create("magnitude", scope="glbal"),
    lambda: Magnitude(scope="glbal"),
    lambda: ns.Recipe.from_toml('[[step]]\nmethod = "magnitude"\nscope = "glbal"\n'),
])
def test_a_bad_choice_fails_the_same_way_however_the_method_is_built(build):
    with pytest.raises(RecipeError) as e:
        build()
    msg = str(e.value)
    assert "magnitude" in msg and "scope = 'glbal'" in msg and "'layer'" in msg and "'global'" in msg


@pytest.mark.parametrize("name, params, message", [
    ("magnitude", {"sparsity": "high"}, "sparsity = 'high' has the wrong type"),
    ("magnitude", {"timing_batch": 6.5}, "timing_batch = 6.5 has the wrong type"),
    ("qat", {"activations": 1}, "activations = 1 has the wrong type"),
    ("block", {"block": [4]}, "block = \\[4\\] has the wrong type"),
    ("kmeans", {"per_layer": {"fc1.weight": 2.5}}, "per_layer = .* has the wrong type"),
    ("channel_prune", {"kinds": ["rows"]}, "kinds = \\['rows'\\]"),
])
def test_wrong_types_are_refused_with_the_field_named(name, params, message):
    with pytest.raises(RecipeError, match=message):
        ns.create(name, **params)


def test_values_are_normalised_as_annotated():
    m = ns.create("block", sparsity=1 // 2, block=[2, 8])   # int -> float, list -> tuple
    assert m.sparsity == 0.0 and type(m.sparsity) is float and m.block == (2, 8)
    assert ns.create("magnitude", per_layer={"fc1": 0.5}).per_layer == ns.PerLayer({"fc1": 0.5})


@pytest.mark.parametrize("name, old, new", [
    ("channel_prune", "amount", "sparsity"), ("frequency", "keep", "sparsity"), ("hashing", "factor", "ratio"),
    ("magnitude", "sparsity_map", "per_layer"), ("kmeans", "bits_map", "per_layer"), ("l0", "lam_map", "per_layer"),
    ("magnitude", "min_keep", "max_sparsity"), ("lottery", "init_seed", "seed"), ("soft_sharing", "data_size",
                                                                                   "dataset_size"),
    ("distill", "alpha", "label_weight"), ("magnitude", "batch_size", "timing_batch"),
    ("stochastic_depth", "remove", "blocks"), ("obd", "score_batch", "calib_batch"),
])
def test_old_names_are_answered_with_the_new_one(name, old, new):
    with pytest.raises(RecipeError, match=f"{name}: unknown field '{old}'; it is now .*'{new}'"):
        ns.Recipe.from_toml(f'[[step]]\nmethod = "{name}"\n{old} = 1\n')


def test_a_misspelt_field_gets_a_suggestion():
    with pytest.raises(RecipeError, match="unknown field 'sparsty'; did you mean 'sparsity'"):
        ns.create("magnitude", sparsty=0.5)


def test_old_group_names_are_answered():
    with pytest.raises(RecipeError, match="'outgoing' is now 'input'"):
        ns.create("group_lasso", group="outgoing")


def test_no_method_has_a_mutable_default_or_restates_a_literal():
    for name, cls in ns.all_methods().items():
        a, b = cls.from_params({"student_layer": "x"} if name == "hints" else {}), None
        b = a.clone()
        for f in dataclasses.fields(cls):
            va, vb = getattr(a, f.name), getattr(b, f.name)
            assert not isinstance(va, (list, dict, set)), f"{name}.{f.name} is a mutable {type(va).__name__}"
            if isinstance(va, ns.Targets):
                assert va is not vb and va.include is not vb.include, f"{name}.{f.name} shared by clones"
        hints = typing.get_type_hints(cls)
        assert all(f.name in hints for f in dataclasses.fields(cls)), name


def test_train_config_is_immutable():
    cfg = ns.TrainConfig(epochs=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 5
    assert cfg.replace(epochs=5).epochs == 5 and cfg.epochs == 3
    with pytest.raises(RecipeError, match="optimizer = 'sgdd' is not one of"):
        ns.TrainConfig(optimizer="sgdd")


def test_registry_refuses_a_taken_name():
    @dataclasses.dataclass
    class Mine(ns.Method):
        name = "magnitude"

    with pytest.raises(RecipeError, match="'magnitude' already exists"):
        ns.register(Mine)
    Mine.name = "h2_test_mine"
    ns.register(Mine)
    try:
        with pytest.raises(RecipeError, match="already exists"):
            ns.register(Mine)
        assert ns.create("h2_test_mine").name == "h2_test_mine"
    finally:
        ns.unregister("h2_test_mine")
    with pytest.raises(RecipeError):
        ns.unregister("magnitude")


def test_per_layer_patterns_and_unmatched_keys():
    model = tiny_mlp()
    sites = ns.select(model)
    pl = ns.PerLayer({"hidden.0.weight": 0.5, "type:Linear": 0.25})
    assert pl.resolve(sites, 0.9) == [0.5, 0.25, 0.25]            # first match wins
    assert ns.PerLayer({"re:hidden\\.1\\..*": 0.1}).resolve(sites, 0.9) == [0.9, 0.1, 0.9]
    with pytest.raises(TargetError, match="'fc9.weight'.*match none"):
        ns.PerLayer({"fc9.weight": 0.5}).resolve(sites, 0.9)
    with pytest.raises(TargetError, match="fc9"):                   # and through a method's run
        ns.compress_(model, ns.Recipe.of(ns.create("magnitude", per_layer={"fc9.weight": 0.5})))


def test_per_layer_in_toml_round_trips():
    text = '[[step]]\nmethod = "kmeans"\nbits = 4\nper_layer = { "type:Conv2d" = 8, "fc1.weight" = 6 }\n'
    r = ns.Recipe.from_toml(text)
    assert r.methods[0].per_layer == {"type:Conv2d": 8, "fc1.weight": 6}
    assert ns.Recipe.from_toml(r.to_toml()).to_dict() == r.to_dict()
    assert 'per_layer = { "type:Conv2d" = 8, "fc1.weight" = 6 }' in r.to_toml()


def test_a_recipe_is_unchanged_by_a_run_and_compresses_two_models_alike(digits):
    train = torch.utils.data.Subset(digits[0], range(256))
    recipe = ns.Recipe.of(ns.create("gradual_magnitude", sparsity=0.8, frequency=2, runtime="dense"),
                          ns.create("kmeans", bits=3, iters=10), finetune=ns.TrainConfig(epochs=1))
    before = recipe.to_dict()
    a, b = tiny_mlp(), tiny_mlp()
    run = ns.run_recipe(a, recipe, data=train, progress=False)
    assert recipe.to_dict() == before
    assert not [k for m in recipe.methods for k in vars(m) if k.endswith("_")]   # no learned state
    assert run.methods[0] is not recipe.methods[0] and run.method("kmeans").k_   # it is on the run's copy
    ns.compress_(b, recipe, data=train, progress=False)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_a_session_prepares_copies(digits):
    model = tiny_mlp()
    recipe = ns.Recipe.of(ns.create("magnitude", sparsity=0.5, runtime="dense"))
    session = recipe.start(model)
    assert session.methods[0] is not recipe.methods[0] and session.methods[0].sites_
    assert not hasattr(recipe.methods[0], "sites_")
    session.finish()
