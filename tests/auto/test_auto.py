"""ns.auto on a tiny MLP on digits: the saved file meets the byte budget, the written
recipe replays to the same weights, an impossible budget is one clear message."""
import copy

import pytest
import torch

from netshrink import Recipe, compress_, save
from netshrink.auto import Budget, auto
from netshrink.errors import NetshrinkError
from netshrink.train.config import TrainConfig
from netshrink.train.loop import fit
from netshrink.zoo import models

FAST = dict(finetune=TrainConfig(epochs=1, lr=1e-3), centroid_finetune={"epochs": 1, "lr": 1e-4},
            sparsities=(0.0, 0.5, 0.8, 0.9), bits=(2, 4, 6), calib_size=128, explore=0, progress=False)


@pytest.fixture(scope="module")
def trained():
    from netshrink.zoo import data

    train, test = data.load("digits", fold=0)
    torch.manual_seed(0)
    net = models.create("mlp", in_features=64, hidden=[32], num_classes=10)
    fit(net, train, TrainConfig(epochs=6, lr=3e-3), progress=False)
    return net, train, test


def _dense(net):
    return 4 * sum(p.numel() for p in net.parameters())


def test_saved_bytes_meet_the_budget_and_the_recipe_replays(trained, tmp_path):
    net, train, test = trained
    before = copy.deepcopy(net.state_dict())
    budget = Budget(bytes=_dense(net) // 12, max_drop=100.0)
    res = auto(net, train, budget, eval_data=test, compare_uniform=True, **FAST)
    assert res.met and res.best.bytes <= budget.bytes
    assert save(res.model, tmp_path / "m.nshr") == res.best.bytes       # the verified figure is the file's size
    assert all(p.bytes <= budget.bytes for p in res.points)              # the uniform point too
    assert any(c.sparsity > 0 for c in res.best.choices.values()) and any(c.bits for c in res.best.choices.values())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())   # the input model is untouched
    res.write(tmp_path / "run", command="test")
    for f in ("recipe.toml", "choices.md", "points.json", "pareto.png", "model.nshr"):
        assert (tmp_path / "run" / f).is_file()
    again = copy.deepcopy(net)
    compress_(again, Recipe.from_toml(tmp_path / "run" / "recipe.toml"), data=train, progress=False)
    got, want = again.state_dict(), res.model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)


def test_impossible_budget_is_one_clear_error_before_training(trained):
    net, train, test = trained
    import netshrink as ns

    with pytest.raises(NetshrinkError, match="size budget 300 bytes cannot be met"):
        ns.auto(net, train, budget=ns.Budget(bytes=300), eval_data=test, **FAST)   # the package is callable


def test_cli_impossible_budget_exits_2_with_one_line(trained, tmp_path, capsys):
    from netshrink import cli

    path = tmp_path / "tiny.nshr"
    save(trained[0], path)
    rc = cli.main(["auto", "--input", str(path), "--data", "digits", "--size", "300B", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "cannot be met" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


class _DictRegressor(torch.nn.Module):
    """A user's model that reads keyword inputs and predicts a float."""

    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 32)
        self.fc2 = torch.nn.Linear(32, 1)

    def forward(self, features):
        return self.fc2(torch.relu(self.fc1(features))).squeeze(-1)


def test_dict_batches_of_a_regression_model_probe_its_own_loss_and_metric():
    # Batches are dicts ({"features", "labels"}), the target a float: the probes measure
    # MSE through the batch adapter, the drop is the rise of MSE on the held-out batches.
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, generator=g)

    def batches(n):
        out = []
        for _ in range(n):
            x = torch.randn(32, 8, generator=g)
            out.append({"features": x, "labels": x @ w + 0.05 * torch.randn(32, generator=g)})
        return out

    train, test = batches(12), batches(4)
    torch.manual_seed(0)
    net = _DictRegressor()
    fit(net, train, TrainConfig(epochs=30, lr=1e-2), progress=False)
    budget = Budget(bytes=_dense(net) // 3, max_drop=1.0)
    res = auto(net, train, budget, eval_data=test, **FAST)
    assert res.metric == "mse" and res.unit == "(mse)"
    assert res.best.bytes <= budget.bytes
    assert all(d == d for t in res.tables for d in t.loss)          # finite probes of the MSE loss
    assert max(res.tables[0].loss) > 0                               # pruning fc1 hurts the MSE
    assert "(mse)" in res.message


def test_batches_without_eval_data_is_one_clear_error(trained):
    net, train, _ = trained
    loader = torch.utils.data.DataLoader(train, batch_size=64)
    with pytest.raises(NetshrinkError, match="pass eval_data"):
        auto(net, loader, Budget(bytes=_dense(net) // 4), **FAST)


def test_unlabelled_batches_probe_distillation_toward_the_model_as_given(trained):
    # Batches of inputs only: the probes and the fine-tuning distil toward the model as
    # given, and the drop is its agreement with it (fidelity_top1, in points).
    net, train, test = trained
    xs = [torch.stack([train[i][0] for i in range(j, j + 64)]) for j in range(0, 640, 64)]
    held = [torch.stack([test[i][0] for i in range(j, j + 64)]) for j in range(0, 192, 64)]
    res = auto(net, xs, Budget(bytes=_dense(net) // 6, max_drop=100.0), eval_data=held, **FAST)
    assert res.metric == "fidelity_top1" and res.unit == "pp" and res.baseline_acc == 1.0
    assert res.best.bytes <= res.budget.bytes and max(res.tables[0].loss) > 0


def test_latency_budget_picks_per_group_widths_and_the_recipe_replays(tmp_path, monkeypatch):
    # A model whose batch-256 forward is compute-bound: each hidden layer's neurons are a
    # group; the widths come from the knapsack on measured per-group latency.
    import functools

    from netshrink.auto import cost, search
    from netshrink.zoo import data

    quick = functools.partial(cost.measured_latency, rounds=3, budget_s=0.01)   # shorter timings, same clock
    monkeypatch.setattr(cost, "measured_latency", quick)
    monkeypatch.setattr(search, "measured_latency", quick)

    train, test = data.load("digits", fold=0)
    torch.manual_seed(0)
    net = models.create("mlp", in_features=64, hidden=[256, 256], num_classes=10)
    fit(net, train, TrainConfig(epochs=1, lr=3e-3), progress=False)
    x = torch.stack([train[i][0] for i in range(256)])
    budget = Budget(latency_ms=0.75 * quick(net, x), batch=256, max_drop=100.0)
    fast = dict(FAST, widths=(0.0, 0.5, 0.75))
    res = auto(net, train, budget, eval_data=test, methods=["channels"], **fast)
    p = res.best
    assert p.widths and set(p.widths) <= {"hidden.0", "hidden.1"} and set(p.widths.values()) <= {0.5, 0.75}
    assert [s.method.name for s in p.recipe.steps] == ["channel_prune"] * len(p.widths)
    assert p.latency_ms <= budget.latency_ms
    res.write(tmp_path / "run")
    again = copy.deepcopy(net)
    compress_(again, Recipe.from_toml(tmp_path / "run" / "recipe.toml"), data=train, progress=False)
    got, want = again.state_dict(), res.model.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    with pytest.raises(NetshrinkError, match="cannot be met by channel pruning"):
        auto(net, train, Budget(latency_ms=budget.latency_ms / 1000, batch=256), eval_data=test,
             methods=["channels"], **fast)


def test_the_probe_cache_is_keyed_by_the_resolved_loss(trained):
    from netshrink.auto.sensitivity import calibration

    net, train, _ = trained
    assert calibration(train, net, 128).loss.name == "cross_entropy"
    assert calibration(train, net, 128, loss="distill").loss.name == "distill_kl"
