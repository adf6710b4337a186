"""The run's loss, not a hard-wired cross-entropy, wherever a method differentiates or
ranks by a loss: taylor channel importance, OBD / Taylor weight saliency, loss-ranked depth
pruning, the hard-label term of distillation; batches of any shape (dicts, two tensors)."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import netshrink as ns
from netshrink.core.context import PrepareContext, StepContext
from netshrink.functional.saliency import fisher_diag
from netshrink.structure import analyze
from netshrink.structure.depth_pruning import block_scores
from netshrink.structure.importance import scores
from tests.user import models as M



def _two_unit():
    """3 -> 2 hidden units -> 1 output, and 16 float targets of shape (N,)."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 0.5, -0.5], [0.2, -0.1, 0.3]]))
        m[0].bias.copy_(torch.tensor([0.1, 0.4]))
        m[2].weight.copy_(torch.tensor([[0.3, 2.0]]))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, generator=g)
    y = 3 * x[:, 1] - x[:, 2] + 0.1 * torch.randn(16, generator=g)
    return m.eval(), TensorDataset(x, y)


def test_taylor_channel_importance_is_the_mse_gradient_on_float_targets():
    m, data = _two_unit()
    x, y = data.tensors
    got = scores(m, analyze(m, x[:2]), "taylor", data=data, batches=1)["0"]
    mm = copy.deepcopy(m)
    F.mse_loss(mm(x), y.reshape(-1, 1)).backward()      # the auto loss of float targets
    lin = mm[0]
    ref = ((lin.weight.grad * lin.weight).sum(1) + lin.bias.grad * lin.bias).detach() ** 2
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-9)
    assert torch.isfinite(got).all() and got.min() > 0 and not torch.equal(got, ref.flip(0))
    # a given loss is what is differentiated: l1 ranks by its own gradient
    l1 = scores(m, analyze(m, x[:2]), "taylor", data=data, batches=1, loss="l1")["0"]
    mm = copy.deepcopy(m)
    F.l1_loss(mm(x), y.reshape(-1, 1)).backward()
    lin = mm[0]
    torch.testing.assert_close(l1, ((lin.weight.grad * lin.weight).sum(1) + lin.bias.grad * lin.bias).detach() ** 2,
                               rtol=1e-5, atol=1e-9)


def test_obd_fisher_is_the_per_sample_mse_gradient_squared():
    m, data = _two_unit()
    x, y = data.tensors
    obd = ns.create("obd", sparsity=0.5, samples=16, calib_batch=8)
    sites = obd.sites(m)
    got = obd.scores(sites, m, PrepareContext(data=data, finetune=ns.TrainConfig()))
    params = [s.tensor for s in sites]
    h = fisher_diag(lambda a, b: F.mse_loss(m(a), b.reshape(-1, 1)), params, [(x, y)])
    for s, p, hk in zip(got, params, h):
        torch.testing.assert_close(s, 0.5 * hk * p.detach() ** 2, rtol=1e-5, atol=1e-10)
        assert torch.isfinite(s).all() and s.abs().sum() > 0


def test_regression_mlp_taylor_channel_prune_obd_and_taylor_saliency_stay_finite():
    train, test = M.diabetes_train(), M.diabetes_test()
    base = M.regressor()
    ns.fit(base, train, ns.TrainConfig(epochs=5, lr=3e-3, batch_size=32), progress=False)
    ft = ns.TrainConfig(epochs=1, lr=1e-3, batch_size=32)
    for methods in ([ns.create("channel_prune", importance="taylor", sparsity=0.25)],
                    [ns.create("obd", sparsity=0.5, samples=64)],
                    [ns.create("obd", sparsity=0.5, samples=64, hessian="hutchinson")],
                    [ns.create("taylor", sparsity=0.5, samples=64)]):
        model = copy.deepcopy(base)
        ns.compress_(model, ns.Recipe.of(*methods, finetune=ft), data=train, progress=False)
        r = ns.measure(model, test, latency=False, size=False)
        assert r.metric == "mse" and 0 < r.metric_value < 2, (methods[0].name, r.metric_value)
        assert all(torch.isfinite(p).all() for p in model.parameters())
    assert model[0].weight.eq(0).float().mean() >= 0.49     # the last one pruned half of the weights


def test_saliency_on_dict_and_two_tensor_batches():
    ft = ns.TrainConfig(epochs=0)
    for model, data in ((M.dictnet(), M.records_loader()), (M.two_tower(), M.pairs())):
        for method in (ns.create("obd", sparsity=0.6, samples=64), ns.create("taylor", sparsity=0.6, samples=64)):
            m = copy.deepcopy(model)
            ns.compress_(m, ns.Recipe.of(method, finetune=ft), data=data, progress=False)
            w = next(p for n, p in m.named_parameters() if n.endswith("weight") and p.dim() == 2)
            assert 0.55 <= float(w.eq(0).float().mean()) <= 0.65


def test_unlabelled_data_distils_and_a_zero_gradient_is_named():
    model = M.two_tower()
    unlabelled = [tuple(t[i:i + 32] for t in M.pairs().tensors[:2]) for i in range(0, 160, 32)]  # (left, right)
    rec = ns.Recipe.of(ns.create("taylor", sparsity=0.5, samples=64), finetune=ns.TrainConfig(epochs=0))
    with pytest.raises(ns.NetshrinkError, match="zero gradient while the model still equals its teacher"):
        ns.compress_(copy.deepcopy(model), rec, data=unlabelled, n_inputs=2, progress=False)
    # hutchinson's curvature of the distillation loss is not zero at the teacher: it prunes
    m = copy.deepcopy(model)
    ns.compress_(m, ns.Recipe.of(ns.create("obd", sparsity=0.5, samples=64, hessian="hutchinson"),
                                 finetune=ns.TrainConfig(epochs=0)), data=unlabelled, n_inputs=2, progress=False)
    assert float(m.a.weight.eq(0).float().mean()) == pytest.approx(0.5, abs=0.05)


def test_depth_pruning_ranks_blocks_by_the_runs_loss():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.Sequential(*[nn.Sequential(nn.Linear(4, 4), nn.Tanh()) for _ in range(3)])
            self.head = nn.Linear(4, 1)

        def forward(self, x):
            for b in self.blocks:
                x = x + b(x)
            return self.head(x)

    torch.manual_seed(0)
    m = Res().eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    data = TensorDataset(x, torch.randn(32, generator=g))      # float targets: MSE
    got = block_scores(m, ["blocks.0", "blocks.1", "blocks.2"], data, batches=1)
    y = data.tensors[1].reshape(-1, 1)
    with torch.no_grad():
        base = float(F.mse_loss(m(x), y))
        for k in range(3):
            blk = m.blocks[k]
            m.blocks[k] = nn.Identity()
            want = float(F.mse_loss(m(x), y)) - base
            m.blocks[k] = blk
            assert got[f"blocks.{k}"] == pytest.approx(want, rel=1e-5, abs=1e-7)


def test_distill_hard_label_term_reweights_the_task_loss():
    d = ns.create("mimic", label_weight=0.25)
    out = torch.randn(8, 1)
    y = torch.randn(8)
    # in fit: the trainer's own task loss is re-weighted
    task = F.mse_loss(out, y.reshape(-1, 1))
    fix = d._reweight_hard(StepContext(model=nn.Identity(), y=y, task_loss=task), out, 0.25)
    assert torch.equal(fix, -0.75 * task)
    # in a user's loop that does not say: the auto loss of float targets, MSE
    fix = d._reweight_hard(StepContext(model=nn.Identity(), y=y), out, 0.25)
    torch.testing.assert_close(fix, -0.75 * task)
    # the trainer distils (no target term): nothing to re-weight
    fix = d._reweight_hard(StepContext(model=nn.Identity(), y=y, task_loss=torch.zeros(())), out, 0.25)
    assert float(fix) == 0.0


def test_mimic_with_labels_trains_a_regressor():
    train, test = M.diabetes_train(), M.diabetes_test()
    teacher = M.regressor()
    ns.fit(teacher, train, ns.TrainConfig(epochs=5, lr=3e-3, batch_size=32), progress=False)
    student = copy.deepcopy(teacher)
    ns.compress_(student, ns.Recipe.of(ns.create("magnitude", sparsity=0.5, runtime="dense"),
                                       ns.create("mimic", label_weight=0.5),
                                       finetune=ns.TrainConfig(epochs=2, lr=1e-3, batch_size=32)),
                 data=train, progress=False)
    r = ns.measure(student, test, latency=False, size=False)
    assert r.metric == "mse" and 0 < r.metric_value < 2
    with pytest.raises(ns.NetshrinkError, match="single output.*use mimic"):    # soft targets of one output: 0
        ns.compress_(copy.deepcopy(teacher), ns.Recipe.of(ns.create("distill"), finetune=ns.TrainConfig(epochs=1)),
                     data=train, progress=False)


def test_stochastic_depth_removes_blocks_by_the_task_metric():
    from netshrink.methods.stochastic_depth import removal_order
    from netshrink.core.submodules import set_submodule
    torch.manual_seed(0)
    model = ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[2, 1, 1], num_classes=1).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(24, 1, 12, 12, generator=g)
    data = TensorDataset(x, torch.randn(24, generator=g))        # float targets: MSE, lower is better
    ref = copy.deepcopy(model)
    (path, v), = removal_order(model, data, limit=1, recalibrate=False)
    want = {}
    for p in ("stages.0.0", "stages.0.1"):
        t = copy.deepcopy(ref)
        set_submodule(t, p, nn.Identity())
        with torch.no_grad():
            want[p] = float(F.mse_loss(t(x), data.tensors[1].reshape(-1, 1)))
    assert path == min(want, key=want.get) and v == pytest.approx(want[path], rel=1e-5)
    # unlabelled, one output: relative error to the model before removal (lower is better)
    (path, v), = removal_order(copy.deepcopy(ref), [x[:12], x[12:]], limit=1, recalibrate=False)
    rel = {}
    with torch.no_grad():
        for p in want:
            t = copy.deepcopy(ref)
            set_submodule(t, p, nn.Identity())
            rel[p] = float((t(x) - ref(x)).norm() / ref(x).norm())
    assert path == min(rel, key=rel.get) and v == pytest.approx(rel[path], rel=1e-5) and v > 0


def test_lassonet_selects_the_features_of_a_regression_by_its_mse(tmp_path):
    from netshrink.methods.lassonet import lassonet_path, plot_path, select_features
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 6, generator=g)
    data = TensorDataset(x, 2 * x[:, 0] - x[:, 1] + 0.05 * torch.randn(300, generator=g))   # float targets
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 1))
    cfg = ns.TrainConfig(epochs=1, lr=0.05, optimizer="sgd", schedule="constant")
    path = lassonet_path(model, data, data, cfg=cfg, lam_start=1.0, multiplier=2.0, min_features=1, M=2.0,
                         dense_epochs=3)
    assert all(p.metric == "mse" and p.accuracy is None and p.score is not None for p in path)
    assert all(p.val_loss == pytest.approx(p.score, rel=1e-6) for p in path)    # auto loss = MSE = the metric
    assert path[-1].n_features <= 1 < path[0].n_features
    assert select_features(path, 2).nonzero().flatten().tolist() == [0, 1]
    plot_path(path, tmp_path / "path.png")
    assert (tmp_path / "path.png").stat().st_size > 0
