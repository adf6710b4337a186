"""lottery and early_bird: rewinding restores survivors exactly; the round schedule."""
import pytest
import torch

import netshrink as ns
from netshrink.functional.prune import hamming_distance
from netshrink.methods.lottery import fresh_init
from netshrink.train.loop import lr_factor, steps_per_epoch
from tests.pruning.common import sparsity_of


def _trained(train):
    torch.manual_seed(0)
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.fit(model, train, ns.TrainConfig(epochs=1), progress=False)
    return model


def test_rewind_to_init_restores_survivors_exactly(digits):
    train, _ = digits
    model = _trained(train)
    theta0 = fresh_init(model, 0)
    torch.manual_seed(0)   # the factory under seed 0 is the zoo's initialisation
    assert torch.equal(theta0.fc1.weight, ns.zoo.models.create("lenet300_100", in_features=64).fc1.weight)
    # a zero-epoch budget: after the last rewind nothing trains, so the weights are theta_0 * mask
    method = ns.create("lottery", sparsity=0.6, rate=0.3, rewind="init", runtime="dense")
    ns.compress_(model, ns.Recipe.of(method, finetune=ns.TrainConfig(epochs=0)), data=train, progress=False)
    for name in ("fc1", "fc2", "fc3"):
        w, w0 = getattr(model, name).weight, getattr(theta0, name).weight
        kept = w != 0
        assert torch.equal(w[kept], w0[kept])
        assert torch.equal(getattr(model, name).bias, getattr(theta0, name).bias)
    assert sparsity_of(model) == pytest.approx(0.6, abs=0.002)


def test_rewind_to_step_k_restores_the_step_k_weights(digits):
    train, _ = digits
    model = _trained(train)
    # theta_k by hand: theta_0 trained for k steps of the round's schedule. With k = one
    # epoch = the whole round budget T, the rounds train T - k = 0 steps after rewinding,
    # so the final survivors are exactly theta_k's.
    cfg = ns.TrainConfig(epochs=1)
    k = steps_per_epoch(len(train), cfg.batch_size)
    ref = fresh_init(model, 0)
    ns.fit(ref, train, cfg, progress=False)
    method = ns.create("lottery", sparsity=0.3, rate=0.3, rewind="step", rewind_step=k, runtime="dense")
    ns.compress_(model, ns.Recipe.of(method, finetune=cfg), data=train, progress=False)
    w = model.fc2.weight
    assert torch.equal(w[w != 0], ref.fc2.weight[w != 0])


@pytest.mark.parametrize("rewind", ["step", "lr"])
def test_after_rewinding_to_step_k_a_round_trains_the_last_t_minus_k_steps(digits, monkeypatch, rewind):
    """Frankle et al. 2020 / Renda et al. 2020: after rewinding to step k a round runs
    steps k .. T-1 of the schedule, not the whole schedule again."""
    train, _ = digits
    model = _trained(train)
    cfg = ns.TrainConfig(epochs=2)
    T = 2 * steps_per_epoch(len(train), cfg.batch_size)
    k = 10
    lrs = []
    real_step = torch.optim.Adam.step

    def counting_step(self, *a, **kw):
        lrs.append(self.param_groups[0]["lr"])
        return real_step(self, *a, **kw)

    monkeypatch.setattr(torch.optim.Adam, "step", counting_step)
    # one round (sparsity = rate)
    method = ns.create("lottery", sparsity=0.2, rate=0.2, rewind=rewind, rewind_step=k, runtime="dense")
    ns.compress_(model, ns.Recipe.of(method, finetune=cfg), data=train, progress=False)
    round_lrs = [cfg.lr * lr_factor(cfg, i, T) for i in range(k, T)]
    if rewind == "step":   # theta_k: the first k steps of the same schedule, then the round
        assert lrs == pytest.approx([cfg.lr * lr_factor(cfg, i, T) for i in range(k)] + round_lrs)
    else:
        assert lrs == pytest.approx(round_lrs)


def test_round_schedule_prunes_rate_per_round_and_ends_on_target():
    method = ns.create("lottery", sparsity=0.9, rate=0.2, output_rate=0.1)
    sizes = [1000, 500, 50]
    plan = method.keep_schedule(sizes, out_index=2)
    assert len(plan) == 11                       # 0.8**11 <= 0.1 < 0.8**10
    for r, keeps in enumerate(plan[:-1], 1):     # every round but the last: exactly the paper's rates
        assert keeps == pytest.approx([0.8 ** r, 0.8 ** r, 0.9 ** r])
    overall = sum(k * n for k, n in zip(plan[-1], sizes)) / sum(sizes)
    assert overall == pytest.approx(0.1)


def test_reinit_keeps_the_masks_but_not_the_weights(digits):
    train, _ = digits
    cfg = ns.TrainConfig(epochs=0)
    a, b = _trained(train), _trained(train)
    ns.compress_(a, ns.Recipe.of(ns.create("lottery", sparsity=0.5, rate=0.3, runtime="dense"), finetune=cfg),
                 data=train, progress=False)
    ns.compress_(b, ns.Recipe.of(ns.create("lottery", sparsity=0.5, rate=0.3, reinit=True, runtime="dense"),
                                 finetune=cfg), data=train, progress=False)
    assert torch.equal(a.fc1.weight != 0, b.fc1.weight != 0)
    assert not torch.equal(a.fc1.weight, b.fc1.weight)


def test_early_bird_draws_when_masks_stop_changing(digits):
    assert hamming_distance(torch.tensor([1, 0, 1, 1]).bool(), torch.tensor([1, 1, 1, 0]).bool()) == 0.5
    train, _ = digits
    model = _trained(train)
    eps = 0.06
    method = ns.create("early_bird", sparsity=0.8, epsilon=eps, window=2, max_epochs=12, runtime="dense")
    method = ns.run_recipe(model, ns.Recipe.of(method, finetune=ns.TrainConfig(epochs=1)), data=train,
                           progress=False).methods[0]
    d = method.distances_
    assert method.found_ and method.epoch_ == len(d) + 1 < 12 and len(d) >= 3
    assert max(d[-2:]) < eps                                                  # drawn when the window is calm
    assert all(max(d[i - 1:i + 1]) >= eps for i in range(1, len(d) - 1))     # and not any earlier
    assert sparsity_of(model) == pytest.approx(0.8, abs=0.002)
