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


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny ops on a shared 2-core machine: two threads each are ~30x slower than one.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


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
