"""The pruning methods in recipes: TOML, several steps, validation messages."""
import pytest
import torch

import netshrink as ns
from netshrink.runtime.sparse_linear import SparseLinear

RECIPE = """
[finetune]
epochs = 1

[[step]]
method = "obd"
sparsity = 0.5
samples = 32
runtime = "dense"

[[step]]
method = "gradual_magnitude"
sparsity = 0.9
frequency = 5
runtime = "sparse"
targets = { include = ["fc1.weight", "fc2.weight"] }
"""


def test_two_pruning_steps_compose_and_end_sparse(digits, tmp_path, monkeypatch):
    train, test = digits
    torch.manual_seed(0)
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.fit(model, train, ns.TrainConfig(epochs=1), progress=False)
    (tmp_path / "r.toml").write_text(RECIPE)
    recipe = ns.Recipe.from_toml(tmp_path / "r.toml")
    first = {}

    cls = type(recipe.steps[0].method)   # a run works on clones: spy on the class
    finalize = cls.finalize

    def spy(self, m):   # the zeros step 1 leaves behind
        finalize(self, m)
        first.update({n: (getattr(m, n).weight == 0).clone() for n in ("fc1", "fc2", "fc3")})
    monkeypatch.setattr(cls, "finalize", spy)
    ns.compress_(model, recipe, data=train, progress=False)
    assert isinstance(model.fc1, SparseLinear) and isinstance(model.fc2, SparseLinear)
    assert type(model.fc3) is torch.nn.Linear                      # not targeted by step 2
    for n in ("fc1", "fc2"):
        w = getattr(model, n).dense_weight()
        assert bool((w[first[n]] == 0).all())                       # step 1's zeros stay zero
        assert float((w == 0).float().mean()) == pytest.approx(0.9, abs=0.002)
    assert float((model.fc3.weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    ns.save(model, tmp_path / "m.nshr")
    assert ns.evaluate(ns.load(tmp_path / "m.nshr"), test) == ns.evaluate(model, test)


@pytest.mark.parametrize("name, params, field", [
    ("gradual_magnitude", {"sparsity": 0.9, "initial_sparsity": 0.95}, "initial_sparsity"),
    ("gradual_magnitude", {"frequency": 0}, "frequency"),
    ("lottery", {"rate": 1.5}, "rate"),
    ("lottery", {"rewind": "step"}, "rewind_step"),
    ("early_bird", {"epsilon": 0}, "epsilon"),
    ("obd", {"hessian": "exact"}, "hessian"),
    ("block", {"block": [4]}, "block"),
    ("nm", {"n": 5, "m": 4}, "n"),
    ("magnitude", {"runtime": "fast"}, "runtime"),
    ("taylor", {"batch_size": 0}, "batch_size"),
])
def test_bad_values_name_the_field(name, params, field):
    with pytest.raises(ns.RecipeError, match=field):
        ns.create(name, **params)
