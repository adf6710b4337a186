"""block / nm masks, and OBD / Taylor saliency against autograd references."""
import pytest
import torch
import torch.nn.functional as F

import netshrink as ns
from netshrink.functional.prune import block_mask, nm_mask
from netshrink.functional.saliency import fisher_diag, hutchinson_diag, obd_saliency
from tests.pruning.common import nm_exact, whole_blocks


def test_nm_mask_has_exactly_n_in_every_group_of_m():
    torch.manual_seed(0)
    w = torch.randn(6, 16)
    mask = nm_mask(w.abs(), n=2, m=4)
    assert bool((mask.reshape(6, 4, 4).sum(-1) == 2).all())
    # the kept two are the two largest of each group
    g = w.abs().reshape(6, 4, 4)
    kept_min = torch.where(mask.reshape(6, 4, 4), g, torch.inf).min(-1).values
    dropped_max = torch.where(~mask.reshape(6, 4, 4), g, -torch.inf).max(-1).values
    assert bool((kept_min >= dropped_max).all())
    # a trailing partial group of 2 keeps min(n, 2)
    assert nm_mask(torch.arange(6.0).reshape(1, 6), n=3, m=4).tolist() == [[False, True, True, True, True, True]]


def test_block_mask_drops_lowest_mean_blocks():
    s = torch.tensor([[1.0, 1.0, 9.0, 9.0], [1.0, 1.0, 9.0, 9.0], [5.0, 5.0, 0.0, 0.0], [5.0, 5.0, 0.0, 0.0]])
    m = block_mask(s, block=(2, 2), sparsity=0.5)
    assert m.int().tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]


@pytest.mark.parametrize("model_name, kw", [("lenet300_100", {"in_features": 64})])
def test_nm_and_block_methods_keep_their_pattern_through_finetuning(digits, model_name, kw):
    train, _ = digits
    for name, params, check in [("nm", {"n": 2, "m": 4}, nm_exact(2, 4)),
                                ("block", {"sparsity": 0.75, "block": [4, 4]}, whole_blocks((4, 4), 0.75))]:
        torch.manual_seed(0)
        model = ns.zoo.models.create(model_name, **kw)
        method = ns.create(name, runtime="dense", **params)
        ns.compress_(model, ns.Recipe.of(method, finetune=ns.TrainConfig(epochs=1)), data=train, progress=False)
        check(model, method)


def _tiny():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    return lin, x, y


def test_fisher_is_the_mean_squared_per_sample_gradient():
    lin, x, y = _tiny()
    loss_of = lambda a, b: F.cross_entropy(lin(a), b)  # noqa: E731
    (fisher,) = fisher_diag(loss_of, [lin.weight], [(x[:5], y[:5]), (x[5:], y[5:])])
    ref = torch.stack([torch.autograd.grad(loss_of(x[i:i + 1], y[i:i + 1]), lin.weight)[0] ** 2
                       for i in range(8)]).mean(0)
    assert torch.allclose(fisher, ref, atol=1e-7)


def test_hutchinson_converges_to_the_exact_hessian_diagonal():
    lin, x, y = _tiny()
    w0 = lin.weight.detach().clone()

    def loss_w(w):
        return F.cross_entropy(F.linear(x, w, lin.bias), y)

    exact = torch.autograd.functional.hessian(loss_w, w0).reshape(6, 6).diagonal().reshape(2, 3)
    loss_of = lambda a, b: F.cross_entropy(lin(a), b)  # noqa: E731
    (est,) = hutchinson_diag(loss_of, [lin.weight], [(x, y)] * 50, probes=40,
                             generator=torch.Generator().manual_seed(0))
    assert torch.allclose(est, exact, atol=0.15 * float(exact.abs().max()))
    assert torch.equal(obd_saliency(lin.weight, hessian_diag=exact), 0.5 * exact * w0 ** 2)


def test_obd_and_taylor_prune_by_their_saliency(digits):
    train, _ = digits
    torch.manual_seed(0)
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.fit(model, train, ns.TrainConfig(epochs=1), progress=False)
    x = torch.stack([train[i][0] for i in range(len(train))])
    y = torch.tensor([train[i][1] for i in range(len(train))])
    g = torch.Generator().manual_seed(0)
    idx = torch.randperm(len(train), generator=g)[:64]
    w = model.fc2.weight.detach().clone()
    # Taylor reference: |w * dL/dw| averaged over the two mini-batches of 32 the method scores on
    grads = [torch.autograd.grad(F.cross_entropy(model(x[idx[i:i + 32]]), y[idx[i:i + 32]]), model.fc2.weight)[0]
             for i in (0, 32)]
    ref = ((w * grads[0]).abs() + (w * grads[1]).abs()) / 2
    for name in ("taylor", "obd"):
        m = ns.zoo.models.create("lenet300_100", in_features=64)
        m.load_state_dict(model.state_dict())
        ns.compress_(m, ns.Recipe.of(ns.create(name, sparsity=0.9, samples=64, runtime="dense"),
                                     finetune=ns.TrainConfig(epochs=0)), data=train, progress=False)
        kept = m.fc2.weight != 0
        assert float(kept.float().mean()) == pytest.approx(0.1, abs=0.001)
        if name == "taylor":   # exactly the top 10 % of the reference saliency survive
            assert ref[kept].min() >= ref[~kept].max() - 1e-9
