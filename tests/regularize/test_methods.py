"""Each regularisation method against a reference: the paper's penalty computed by hand,
the prox formula, the local re-parametrisation's moments, deterministic eval gates."""
import math

import pytest
import torch
from torch.utils.data import TensorDataset

import netshrink as ns
from netshrink.core.context import PrepareContext, StepContext
from netshrink.functional import hard_concrete as hc
from netshrink.functional.prox import hier_prox, soft_threshold
from netshrink.functional.vd import kl_approx
from netshrink.methods.lassonet import _HierProxHooks, _Skip, lassonet_path, select_features
from tests.helpers import tiny_mlp


class _Opt:  # what after_step reads: the current learning rate
    def __init__(self, lr):
        self.param_groups = [{"lr": lr}]


def _prepared(name, model, n=100, **params):
    m = ns.create(name, **params)
    data = TensorDataset(torch.randn(n, 64), torch.randint(0, 10, (n,)))
    m.prepare(model, PrepareContext(data=data, steps_total=10))
    return m


def test_l1_prox_step_is_soft_thresholding_with_lr_times_lambda():
    model = tiny_mlp()
    before = [p.detach().clone() for p in (model.hidden[0].weight, model.hidden[1].weight, model.out.weight)]
    m = _prepared("l1", model, lam=0.7, prox=True)
    m.after_step(StepContext(model=model, optimizer=_Opt(0.05)))
    for b, p in zip(before, (model.hidden[0].weight, model.hidden[1].weight, model.out.weight)):
        torch.testing.assert_close(p.detach(), soft_threshold(b, t=0.05 * 0.7))
    assert m.loss(StepContext(model=model)) is None   # the prox replaces the penalty


def test_group_lasso_penalty_by_hand():
    model = tiny_mlp()
    m = _prepared("group_lasso", model, lam=0.01, prox=False, l1=0.002)
    expect = 0.0
    for layer in (model.hidden[0], model.hidden[1], model.out):
        w = layer.weight.detach()
        for j in range(w.shape[1]):              # outgoing weights of input unit j = column j
            expect += 0.01 * math.sqrt(w.shape[0]) * float(w[:, j].norm())
        expect += 0.002 * float(w.abs().sum())
    assert abs(float(m.loss(StepContext(model=model)).detach()) - expect) < 1e-4


def test_dropneuron_penalty_by_hand_and_dead_units():
    model = tiny_mlp()
    with torch.no_grad():
        model.hidden[0].weight[3] = 0          # unit 3 of the first layer has no incoming weights
        model.hidden[1].weight[:, 5] = 0       # unit 5 of the first layer has no outgoing weights
    m = _prepared("dropneuron", model, lam_output=0.03, lam_input=0.02)
    expect = 0.0
    for layer in (model.hidden[0], model.hidden[1], model.out):
        w = layer.weight.detach()
        expect += 0.03 * sum(float(w[i].norm()) for i in range(w.shape[0]))
        expect += 0.02 * sum(float(w[:, j].norm()) for j in range(w.shape[1]))
    assert abs(float(m.loss(StepContext(model=model))) - expect) < 1e-4
    m.finalize(model)
    assert m.dead_units_["hidden.0"].nonzero().flatten().tolist() == [3]
    assert m.dead_inputs_["hidden.1"].nonzero().flatten().tolist() == [5]
    r = ns.measure(model, TensorDataset(torch.randn(8, 64), torch.randint(0, 10, (8,))), latency=False, size=False)
    assert r.removable_units["hidden.0"]["dead_units"] == 1 and r.removable_units["hidden.1"]["dead_inputs"] == 1


def test_l0_penalty_and_deterministic_eval_gate():
    model = tiny_mlp()
    m = _prepared("l0", model, n=200, lam=0.5, weight_decay=0.1)
    # penalty = sum_j P(z_j != 0) (lam |g_j| + wd/2 ||w_g||^2) / N, gates on Linear inputs
    expect = 0.0
    for layer, rp in zip((model.hidden[0], model.hidden[1], model.out), m.gates_):
        w = layer.parametrizations.weight.original.detach()
        p = hc.prob_nonzero(rp.log_alpha.detach())
        for j in range(w.shape[1]):
            expect += float(p[j]) * (0.5 * w.shape[0] + 0.05 * float((w[:, j] ** 2).sum()))
    assert abs(float(m.loss(StepContext(model=model))) - expect / 200) < 1e-5
    x = torch.randn(5, 64)
    model.train()
    assert not torch.equal(model(x), model(x))            # training samples gates
    model.eval()
    with torch.no_grad():
        y = model(x)
        w_eff = model.hidden[0].weight.clone()
    zhat = hc.test_gate(m.gates_[0].log_alpha.detach())
    torch.testing.assert_close(w_eff, model.hidden[0].parametrizations.weight.original.detach() * zhat)
    m.finalize(model)
    with torch.no_grad():
        assert torch.equal(model(x), y)                    # baked = eval value, bit for bit


def test_vd_loss_lrt_moments_and_eval_mask():
    torch.manual_seed(0)
    lin = ns.zoo.models.create("mlp", in_features=6, hidden=[], num_classes=4)
    m = _prepared("variational_dropout", lin, n=50, warmup=0.5, kl_weight=2.0)
    rp = m.reparams_[0]
    with torch.no_grad():
        rp.log_sigma2.copy_(torch.linspace(-6, 2, 24).reshape(4, 6))
    theta = lin.out.parametrizations.weight.original.detach()
    kl = float(kl_approx(rp.log_alpha(theta)).sum())
    # beta ramps linearly over warmup x steps_total = 5 steps
    assert abs(float(m.loss(StepContext(model=lin, step=2, steps_total=10))) - 2.0 * 0.4 * kl / 50) < 1e-5
    assert abs(float(m.loss(StepContext(model=lin, step=9, steps_total=10))) - 2.0 * kl / 50) < 1e-5
    # local re-parametrisation: outputs ~ N(x theta + b, x^2 sigma^2)
    x = torch.randn(1, 6)
    lin.train()
    ys = lin(x.expand(20000, 6)).detach()       # independent noise per row
    mean = x @ theta.t() + lin.out.bias.detach()
    var = (x * x) @ torch.exp(rp.log_sigma2.detach()).t()
    torch.testing.assert_close(ys.mean(0), mean.squeeze(0), atol=4 * float(var.max().sqrt()) / 141, rtol=0)
    torch.testing.assert_close(ys.var(0), var.squeeze(0), rtol=0.05, atol=1e-6)
    # eval: theta where log alpha <= 3, exactly zero elsewhere; finalize bakes that
    lin.eval()
    keep = rp.log_alpha(theta) <= 3
    torch.testing.assert_close(lin.out.weight.detach(), theta * keep)
    m.finalize(lin)
    assert torch.equal(lin.out.weight.detach(), theta * keep) and not hasattr(lin.out, "parametrizations")
    assert m.layer_sparsity_["out.weight"] == pytest.approx(1 - float(keep.float().mean()))


def test_vd_on_lstm_samples_weights_in_training_only():
    torch.manual_seed(0)
    net = ns.zoo.models.create("lstm", input_size=3, hidden_size=4, num_layers=1)
    m = _prepared("variational_dropout", net, n=10)
    assert all(rp.weight_noise and rp._hook is None for rp in m.reparams_[:2])
    x = torch.randn(2, 5, 3)
    with torch.no_grad():
        for rp in m.reparams_:
            rp.log_sigma2.fill_(-2.0)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))


def test_lassonet_hooks_apply_hier_prox_and_path_drops_features():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    # 6 features; only the first two carry the label
    x = torch.randn(300, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    data = TensorDataset(x, y)
    model = ns.zoo.models.create("mlp", in_features=6, hidden=[8], num_classes=2)
    skip = _Skip(model, 6, 2)
    with torch.no_grad():
        skip.theta.copy_(torch.randn(2, 6, generator=g))
    lin = model.hidden[0]
    t0, w0 = skip.theta.detach().clone(), lin.weight.detach().clone()
    _HierProxHooks(skip.theta, lin, lam=3.0, M=2.0).after_step(StepContext(model=model, optimizer=_Opt(0.1)))
    t_ref, w_ref = hier_prox(t0.t(), w0.t(), lam=0.3, M=2.0)
    torch.testing.assert_close(skip.theta.detach(), t_ref.t())
    torch.testing.assert_close(lin.weight.detach(), w_ref.t())
    skip.remove()
    assert not hasattr(model, "lassonet_skip")
    cfg = ns.TrainConfig(epochs=1, lr=0.05, optimizer="sgd", schedule="constant")
    path = lassonet_path(model, data, data, cfg=cfg, lam_start=3.0, multiplier=2.0, min_features=1, M=2.0)
    counts = [p.n_features for p in path]
    assert counts[-1] <= 1 < counts[0]
    assert select_features(path, 2).nonzero().flatten().tolist() == [0, 1]


def test_methods_compose_in_one_recipe(digits, tmp_path):
    """group lasso, then L0 gates, then VD on a GRU-free MLP: each step's zeros survive
    the next, and the finished model saves and loads bit for bit."""
    train, test = digits
    model = tiny_mlp()
    recipe = ns.Recipe.from_toml("""
[finetune]
epochs = 1
[[step]]
method = "group_lasso"
lam = 20.0
[[step]]
method = "l0"
lam = 1.0
drop_rate = 0.05
[[step]]
method = "variational_dropout"
warmup = 0.0
""")
    gl = ns.run_recipe(model, recipe, data=train, progress=False).methods[0]
    dead = gl.dead_inputs_["hidden.1"]
    assert dead.any()
    assert (model.hidden[1].weight.detach()[:, dead] == 0).all()      # still dead after L0 and VD
    x = torch.stack([test[i][0] for i in range(16)])
    ns.save(model, tmp_path / "m.nshr")
    assert torch.equal(model(x), ns.load(tmp_path / "m.nshr")(x))


def test_gru_hidden_units_span_three_gates():
    torch.manual_seed(0)
    net = ns.zoo.models.create("gru", input_size=3, hidden_size=4, num_layers=1)
    m = _prepared("group_lasso", net, group="output", lam=1e3, prox=True)
    m.after_step(StepContext(model=net, optimizer=_Opt(1.0)))    # a huge threshold: every unit dies
    m.finalize(net)
    assert m.dead_units_["rnn.weight_ih_l0"].shape == (4,) and m.dead_units_["rnn.weight_ih_l0"].all()


def test_hier_prox_hook_on_live_features_only_equals_the_full_prox():
    """The hook solves Hier-Prox only for features still in; the result is the full
    operator's (a feature with theta_j = 0 and W_j = 0 maps to itself)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    model = ns.zoo.models.create("mlp", in_features=6, hidden=[8], num_classes=2)
    skip = _Skip(model, 6, 2)
    lin = model.hidden[0]
    with torch.no_grad():
        skip.theta.copy_(torch.randn(2, 6, generator=g))
        skip.theta[:, [1, 4]] = 0
        lin.weight[:, [1, 4]] = 0
    t0, w0 = skip.theta.detach().clone(), lin.weight.detach().clone()
    _HierProxHooks(skip.theta, lin, lam=0.5, M=2.0).after_step(StepContext(model=model, optimizer=_Opt(0.1)))
    t_ref, w_ref = hier_prox(t0.t(), w0.t(), lam=0.05, M=2.0)
    torch.testing.assert_close(skip.theta.detach(), t_ref.t())
    torch.testing.assert_close(lin.weight.detach(), w_ref.t())
    assert (skip.theta.detach()[:, [1, 4]] == 0).all() and (lin.weight.detach()[:, [1, 4]] == 0).all()
    skip.remove()


def _toy_path_data(n=300):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return TensorDataset(x, y)


def test_train_to_convergence_stops_after_patience_epochs_without_improvement():
    from netshrink.methods import lassonet as L
    data = _toy_path_data()
    model = ns.zoo.models.create("mlp", in_features=6, hidden=[8], num_classes=2)
    skip = _Skip(model, 6, 2)
    cfg = ns.TrainConfig(epochs=50, lr=1e-9, optimizer="sgd", schedule="constant")   # nothing moves
    opt = torch.optim.SGD([p for p in model.parameters()], lr=1e-9)

    class Still:  # no prox either: the objective cannot improve
        def loss(self, ctx):
            return None

        def after_step(self, ctx):
            pass
    epochs, loss, acc = L.train_to_convergence(model, data, data, cfg=cfg, optimizer=opt, hooks=Still(),
                                               lam=0.0, theta=skip.theta, patience=3)
    assert epochs == 3                       # the objective never falls below 0.99 x its start
    logits, y = L.predict(model, data)
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, y)))
    assert acc == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    # without validation data or patience: exactly cfg.epochs
    epochs, loss, _ = L.train_to_convergence(model, data, None, cfg=cfg.replace(epochs=4), optimizer=opt,
                                             hooks=Still(), lam=0.0, theta=skip.theta, patience=3)
    assert epochs == 4 and loss is None
    skip.remove()


def test_path_starts_at_dense_validation_loss_and_runs_until_no_feature_is_left():
    from netshrink.methods import lassonet as L
    data = _toy_path_data()
    torch.manual_seed(0)
    model = ns.zoo.models.create("mlp", in_features=6, hidden=[8], num_classes=2)
    cfg = ns.TrainConfig(epochs=5, lr=0.05, optimizer="sgd", schedule="constant")
    path = lassonet_path(model, data, data, cfg=cfg, M=2.0, multiplier=1.5, idle_multiplier=3.0, dense_epochs=3,
                         patience=2, dense_patience=2)
    assert not hasattr(model, "lassonet_skip")
    assert path[-1].n_features == 0 and path[0].n_features > 0           # the whole path
    assert all(1 <= p.epochs <= 5 for p in path)
    # lambda grows x3 while nothing leaves after the first point, then x1.5
    ratios = [b.lam / a.lam for a, b in zip(path, path[1:])]
    first_drop = next(i for i in range(1, len(path)) if path[i].n_features < path[i - 1].n_features)
    assert all(r == pytest.approx(3.0) for r in ratios[:first_drop])
    assert all(r == pytest.approx(1.5) for r in ratios[first_drop:])
    assert select_features(path, 2).nonzero().flatten().tolist() == [0, 1]
    # lam_start: eps_start x the dense model's validation loss (the package's default)
    torch.manual_seed(0)
    model2 = ns.zoo.models.create("mlp", in_features=6, hidden=[8], num_classes=2)
    seen = {}
    orig = L.train_to_convergence

    def spy(*a, **kw):
        out = orig(*a, **kw)
        seen.setdefault("dense", out[1])
        return out
    L.train_to_convergence = spy
    try:
        p2 = lassonet_path(model2, data, data, cfg=cfg, M=2.0, multiplier=1.5, dense_epochs=3, patience=2,
                           dense_patience=2, eps_start=0.5, max_points=1)
    finally:
        L.train_to_convergence = orig
    assert p2[0].lam == pytest.approx(0.5 * seen["dense"])
