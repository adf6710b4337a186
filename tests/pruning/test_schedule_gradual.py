"""gradual_magnitude: Zhu & Gupta's cubic schedule, and masks that hold."""
import pytest
import torch

import netshrink as ns
from netshrink.functional.schedule import cubic_sparsity, geometric_rounds, is_update_step
from tests.pruning.common import sparsity_of


@pytest.mark.parametrize("t", [0, 10, 20, 50, 90, 100, 150])
def test_cubic_schedule_equals_the_formula(t):
    s_i, s_f, t0, dt, n = 0.1, 0.9, 0, 10, 10
    want = s_f if t >= t0 + n * dt else s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3
    assert cubic_sparsity(t, initial=s_i, final=s_f, start=t0, end=t0 + n * dt, frequency=dt) == pytest.approx(want)


def test_schedule_holds_between_updates_and_starts_at_t0():
    kw = dict(initial=0.0, final=0.8, start=20, end=120, frequency=25)
    assert cubic_sparsity(19, **kw) == 0.0
    assert cubic_sparsity(20, **kw) == 0.0                       # s_i at t0
    assert cubic_sparsity(44, **kw) == cubic_sparsity(20, **kw)  # no update before t0 + dt
    assert cubic_sparsity(45, **kw) == pytest.approx(0.8 - 0.8 * (1 - 25 / 100) ** 3)
    assert [t for t in range(130) if is_update_step(t, start=20, end=120, frequency=25)] == [20, 45, 70, 95, 120]
    assert geometric_rounds(0.5, 0.2) == 4 and 0.8 ** 4 <= 0.5 < 0.8 ** 3


def test_gradual_masks_follow_the_schedule_in_a_users_loop(digits):
    train, _ = digits
    torch.manual_seed(0)
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    method = ns.create("gradual_magnitude", sparsity=0.9, initial_sparsity=0.2, start_step=4, end_step=44,
                       frequency=10, runtime="dense")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    session = ns.Recipe.of(method).start(model, opt)
    x, y = torch.stack([train[i][0] for i in range(32)]), torch.tensor([train[i][1] for i in range(32)])
    seen = {}
    for step in range(50):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        session.after_step()
        w = model.fc1.weight
        seen[step + 1] = float((w == 0).float().mean())
    for t in (4, 14, 24, 34, 44, 50):
        want = cubic_sparsity(t, initial=0.2, final=0.9, start=4, end=44, frequency=10)
        assert seen[t] == pytest.approx(want, abs=1 / model.fc1.weight.numel() + 1e-6), t
    session.finish()
    assert sparsity_of(model) == pytest.approx(0.9, abs=0.002)


def test_pruned_weights_stay_exactly_zero_through_finetuning(digits):
    train, _ = digits
    torch.manual_seed(0)
    model = ns.zoo.models.create("lstm", input_size=8, hidden_size=16)
    zeros_seen = {}

    class Watch:
        def loss(self, ctx):
            return None

        def after_step(self, ctx):
            for s in ns.select(ctx.model):
                z = (s.tensor == 0)
                if s.name in zeros_seen:   # once pruned, always zero
                    assert bool(z[zeros_seen[s.name]].all()), s.name
                zeros_seen[s.name] = z.clone()

    method = ns.create("gradual_magnitude", sparsity=0.8, frequency=5, runtime="dense")
    from netshrink.core.context import PrepareContext
    method.prepare(model, PrepareContext(data=train, steps_total=46))
    from netshrink.core.session import Session

    class Both:
        def __init__(self):
            self.s, self.w = Session(model, [method], total_steps=46), Watch()

        def loss(self, ctx):
            return None

        def after_step(self, ctx):
            self.s.after_step(ctx)
            self.w.after_step(ctx)

    ns.fit(model, train, ns.TrainConfig(epochs=2), hooks=Both(), progress=False)
    # input and recurrent weights of both LSTM layers are pruned on the schedule
    names = {s.name for s in ns.select(model)}
    assert {"rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.weight_hh_l1"} <= names
    method.finalize(model)
    for s in ns.select(model):
        assert bool((s.tensor[zeros_seen[s.name]] == 0).all())
    assert sparsity_of(model) >= 0.8 - 0.002
