"""Sensitivity analysis: per-layer curves, the allocation rule, and the CLI."""
import json

import pytest
import torch

import netshrink as ns
from netshrink.analysis.sensitivity import SensitivityResult, sensitivity
from netshrink.cli import main


def test_allocation_takes_the_smallest_tolerated_drop_that_reaches_the_target():
    res = SensitivityResult(sparsities=[0.5, 0.9], baseline=0.95,
                            curves={"a": [0.95, 0.94], "b": [0.93, 0.50]}, sizes={"a": 900, "b": 100})
    # drop 0: a -> 0.5, b -> 0 (overall 0.45); drop 0.01: a -> 0.9, b -> 0 (overall 0.81)
    assert res.allocation(0.4) == {"a": 0.5, "b": 0.0}
    assert res.allocation(0.8) == {"a": 0.9, "b": 0.0}
    assert res.allocation(0.85) == {"a": 0.9, "b": 0.5}        # drop 0.02 lets b go to 0.5: 0.86
    with pytest.raises(ns.NetshrinkError):
        res.allocation(0.95)


def test_each_layer_pruned_alone_and_restored(digits):
    train, test = digits
    torch.manual_seed(0)
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.fit(model, train, ns.TrainConfig(epochs=2), progress=False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = sensitivity(model, test, sparsities=[0.0, 0.5, 0.99])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(res.curves) == {"fc1.weight", "fc2.weight", "fc3.weight"}
    assert all(c[0] == res.baseline for c in res.curves.values())      # 0 % pruned = dense
    # reference: fc3 pruned alone at 99 % by hand
    with torch.no_grad():
        w = model.fc3.weight
        keep = w.abs() >= w.abs().flatten().sort(descending=True).values[round(0.01 * w.numel()) - 1]
        w.mul_(keep)
    assert res.curves["fc3.weight"][2] == ns.evaluate(model, test)


def test_sensitivity_cli_writes_curves_plot_and_a_usable_recipe(tmp_path, monkeypatch, capsys):
    out = tmp_path / "sens"
    # a tiny baseline budget through the cache would still train 20 epochs; digits keeps it fast
    assert main(["sensitivity", "--model", "lenet300_100", "--data", "digits", "--target", "0.8",
                 "--sparsities", "0.5,0.8,0.95", "--out", str(out)]) == 0
    data = json.loads((out / "sensitivity.json").read_text())
    assert data["overall"] >= 0.8 and (out / "sensitivity.png").stat().st_size > 0
    recipe = ns.Recipe.from_toml(out / "recipe.toml")
    assert recipe.steps[0].method.per_layer == data["allocation"]
    assert main(["sensitivity", "--model", "lenet300_100", "--data", "digits", "--out", str(out)]) == 2  # exists
    assert main(["sensitivity", "--model", "lenet300_100", "--data", "digits", "--sparsities", "2",
                 "--out", str(tmp_path / "x")]) == 2
