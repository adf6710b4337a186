"""The trainer: determinism, hooks, and resume after a kill."""
import pytest
import torch

import netshrink as ns
from netshrink.train import loop
from netshrink.train.config import TrainConfig
from tests.helpers import tiny_mlp


def _params(m):
    return torch.cat([p.detach().reshape(-1) for p in m.parameters()])


def test_same_seed_same_weights(digits):
    train, _ = digits
    cfg = TrainConfig(epochs=2, batch_size=128)
    a, b = tiny_mlp(), tiny_mlp()
    ns.fit(a, train, cfg, progress=False)
    ns.fit(b, train, cfg, progress=False)
    assert torch.equal(_params(a), _params(b))


def test_training_learns(digits):
    train, test = digits
    m = tiny_mlp()
    before = ns.evaluate(m, test)
    ns.fit(m, train, TrainConfig(epochs=10, batch_size=64, lr=1e-2), progress=False)
    assert ns.evaluate(m, test) > max(0.85, before + 0.5)


def test_resume_after_kill_gives_the_same_result(digits, tmp_path, monkeypatch):
    train, _ = digits
    cfg = TrainConfig(epochs=3, batch_size=128)
    ref = tiny_mlp()
    ns.fit(ref, train, cfg, progress=False)

    ckpt = tmp_path / "run.ckpt"
    killed = tiny_mlp()
    real_save = loop._save_checkpoint

    def save_then_die(path, model, opt, epoch):
        real_save(path, model, opt, epoch)
        if epoch == 2:
            raise KeyboardInterrupt  # killed after the second epoch's checkpoint

    monkeypatch.setattr(loop, "_save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        ns.fit(killed, train, cfg, checkpoint=ckpt, progress=False)
    monkeypatch.setattr(loop, "_save_checkpoint", real_save)
    assert ckpt.exists()

    resumed = tiny_mlp(seed=123)  # a fresh process: different weights until resumed
    ns.fit(resumed, train, cfg, checkpoint=ckpt, progress=False)
    assert torch.equal(_params(resumed), _params(ref))
    assert not ckpt.exists()  # removed once the run completed


def test_lr_schedules():
    cfg = TrainConfig(schedule="cosine")
    assert loop.lr_factor(cfg, 0, 100) == 1.0 and abs(loop.lr_factor(cfg, 50, 100) - 0.5) < 1e-12
    assert loop.lr_factor(TrainConfig(schedule="step"), 80, 100) == pytest.approx(0.01)
    assert loop.lr_factor(TrainConfig(schedule="constant"), 99, 100) == 1.0


def test_hooks_are_called_every_step(digits):
    train, _ = digits
    calls = {"loss": 0, "after": 0}

    class Hooks:
        def loss(self, ctx):
            calls["loss"] += 1
            return torch.zeros(())

        def after_step(self, ctx):
            calls["after"] += 1
            assert ctx.steps_total == loop.steps_per_epoch(len(train), 256) * 2

    ns.fit(tiny_mlp(), train, TrainConfig(epochs=2, batch_size=256), hooks=Hooks(), progress=False)
    assert calls["loss"] == calls["after"] == loop.steps_per_epoch(len(train), 256) * 2
