"""Sensitivity on a user's model: the measure metric (MSE for a regression, fidelity to the
dense model without labels, the user's own), through the batch adapter (dict, two-tensor
batches), from Python and from `netshrink sensitivity --model package.module:factory`."""
import json

import pytest
import torch
import torch.nn.functional as F

import netshrink as ns
from netshrink.analysis.sensitivity import sensitivity
from netshrink.cli import main
from tests.user import models as M



def test_regression_sensitivity_is_the_mse_and_damage_is_its_rise():
    train, test = M.diabetes_train(), M.diabetes_test()
    model = M.regressor()
    ns.fit(model, train, ns.TrainConfig(epochs=5, lr=3e-3, batch_size=32), progress=False)
    res = sensitivity(model, test, sparsities=[0.0, 0.9])
    x, y = test.tensors
    with torch.no_grad():
        dense = float(F.mse_loss(model(x), y.reshape(-1, 1)))
        assert res.metric == "mse" and not res.higher_is_better
        assert res.baseline == pytest.approx(dense, rel=1e-6)
        assert all(c[0] == pytest.approx(dense, rel=1e-6) for c in res.curves.values())
        w = model[2].weight
        saved = w.clone()
        keep = w.abs() >= w.abs().flatten().sort(descending=True).values[round(0.1 * w.numel()) - 1]
        w.mul_(keep)
        by_hand = float(F.mse_loss(model(x), y.reshape(-1, 1)))
        w.copy_(saved)
    assert res.curves["2.weight"][1] == pytest.approx(by_hand, rel=1e-6) and by_hand > dense
    assert res.drops("2.weight")[1] == pytest.approx(by_hand - dense, rel=1e-5)   # a rise of the MSE is damage
    assert sum(res.allocation(0.45).values()) > 0


def test_dict_two_tensor_and_unlabelled_batches():
    dict_res = sensitivity(M.dictnet(), M.records_loader(), sparsities=[0.5, 0.9])
    assert dict_res.metric == "accuracy" and set(dict_res.curves) == {"dense.weight", "emb.weight", "out.weight"}
    pair_res = sensitivity(M.two_tower(), M.pairs(), sparsities=[0.5])
    assert pair_res.metric == "accuracy" and len(pair_res.curves) == 3
    unlabelled = [tuple(t[i:i + 32] for t in M.pairs().tensors[:2]) for i in range(0, 160, 32)]
    fid = sensitivity(M.two_tower(), unlabelled, sparsities=[0.0, 0.9], n_inputs=2)
    assert fid.metric == "fidelity_top1" and fid.baseline == 1.0
    assert all(c[0] == 1.0 for c in fid.curves.values()) and min(c[1] for c in fid.curves.values()) < 1.0
    x = M.diabetes_test().tensors[0]
    reg = sensitivity(M.regressor(), [x[:64], x[64:]], sparsities=[0.9])   # one output, no targets
    assert reg.metric == "fidelity_relative_error" and reg.baseline == 0.0 and not reg.higher_is_better
    assert min(c[0] for c in reg.curves.values()) > 0
    bert = sensitivity(M.bert(), M.token_batches(2), sparsities=[0.9], targets=ns.Targets(include=["re:.*query.weight"]))
    assert bert.metric == "fidelity_cosine" and bert.baseline == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ns.NetshrinkError, match="which way is better"):
        sensitivity(M.regressor(), M.diabetes_test(), sparsities=[0.5], metric=M.my_mae)
    mae = sensitivity(M.regressor(), M.diabetes_test(), sparsities=[0.5], metric=M.my_mae, higher_is_better=False)
    assert mae.metric == "my_mae" and not mae.higher_is_better


def test_sensitivity_cli_on_a_users_regressor(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["sensitivity", "--model", "tests.user.models:regressor", "--data", "tests.user.models:diabetes",
            "--sparsities", "0.5,0.9", "--target", "0.5"]
    assert main([*args, "--out", str(out)]) == 0
    printed = " ".join(capsys.readouterr().out.split())    # the table title, wrapped to the terminal
    assert "held-out mse with one layer pruned" in printed and "lower is better" in printed
    data = json.loads((out / "sensitivity.json").read_text())
    assert data["metric"] == "mse" and data["overall"] >= 0.5
    assert ns.Recipe.from_toml(out / "recipe.toml").steps[0].method.per_layer == data["allocation"]
    assert main([*args, "--metric", "tests.user.models:my_mae", "--out", str(tmp_path / "m")]) == 2
    assert "which way is better" in capsys.readouterr().err
    assert main([*args, "--metric", "tests.user.models:my_mae", "--lower-is-better", "--out", str(tmp_path / "m")]) == 0
    capsys.readouterr()
    assert json.loads((tmp_path / "m/sensitivity.json").read_text())["metric"] == "my_mae"
    assert main(["sensitivity", "--model", "tests.user.models:dictnet", "--data", "tests.user.models:records_loader",
                 "--sparsities", "0.5", "--target", "0.3", "--out", str(tmp_path / "d")]) == 0
    assert "held-out accuracy (%) with one layer pruned" in " ".join(capsys.readouterr().out.split())
