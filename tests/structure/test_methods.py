"""channel_prune / depth_prune against references: importance formulas computed by hand,
the per-layer selection, the lesion and block-influence scores, field validation."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

import netshrink as ns
from netshrink.core.context import PrepareContext
from netshrink.structure import analyze
from netshrink.structure.depth_pruning import block_scores, candidates
from netshrink.structure.importance import scores


def _mlp():
    torch.manual_seed(0)
    return ns.zoo.models.create("mlp", in_features=6, hidden=[8, 5], num_classes=3).eval()


def _data(n=32, d=6, classes=3):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g))


def test_norm_and_bn_importance_are_the_filter_norms():
    m = _mlp()
    g = analyze(m, torch.zeros(2, 6))
    s1, s2 = scores(m, g, "l1"), scores(m, g, "l2")
    w = m.hidden[0].weight.detach()
    torch.testing.assert_close(s1["hidden.0"], w.abs().sum(1).double().float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(s2["hidden.0"], torch.linalg.vector_norm(w, dim=1), rtol=1e-5, atol=1e-6)
    r = ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[1, 1, 1])
    with torch.no_grad():
        r.stages[0][0].bn1.weight.copy_(torch.tensor([0.5, -2.0, 0.1, 1.0]))
    gb = scores(r, analyze(r, torch.zeros(1, 1, 16, 16)), "bn_scale")
    torch.testing.assert_close(gb["stages.0.0.conv1"], torch.tensor([0.5, 2.0, 0.1, 1.0]))


def test_taylor_is_squared_sum_of_grad_times_weight_per_batch():
    m = _mlp()
    data = _data(64)
    g = analyze(m, torch.zeros(2, 6))
    got = scores(m, g, "taylor", data=data, batches=2)["hidden.1"]
    # by hand (Molchanov et al. 2019): per batch (sum over the unit's weights and bias of g*w)^2, summed
    ref = torch.zeros(5)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(0))
    for b in range(2):
        idx = perm[b * 64:(b + 1) * 64]
        if len(idx) == 0:
            break
        mm = copy.deepcopy(m)
        x, y = data.tensors[0][idx], data.tensors[1][idx]
        F.cross_entropy(mm(x), y).backward()
        lin = mm.hidden[1]
        ref += ((lin.weight.grad * lin.weight).sum(1) + lin.bias.grad * lin.bias).detach() ** 2
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-9)


def test_layer_scope_removes_the_lowest_l1_units_of_every_layer():
    m = _mlp()
    ref = copy.deepcopy(m)
    method = ns.create("channel_prune", sparsity=0.5, scope="layer", importance="l1")
    method.prepare(m, PrepareContext(data=_data()))
    keep = torch.sort(torch.argsort(ref.hidden[0].weight.abs().sum(1), descending=True)[:4]).values
    torch.testing.assert_close(m.hidden[0].weight, ref.hidden[0].weight[keep], rtol=0, atol=0)
    assert m.hidden[1].out_features == 5 - round(2.5)
    assert method.units_after_ == method.units_before_ - 4 - round(2.5)


def test_dead_units_from_another_method_are_removed_exactly():
    m = _mlp()
    with torch.no_grad():  # what a group-lasso step leaves: whole rows at zero
        m.hidden[0].weight[[1, 6]] = 0
        m.hidden[0].bias[[1, 6]] = 0
    x = torch.randn(4, 6)
    before = m(x)
    method = ns.create("channel_prune", importance="dead")
    method.prepare(m, PrepareContext(data=_data()))
    assert m.hidden[0].out_features == 6 and method.removed_ == {"hidden.0": 2}
    torch.testing.assert_close(m(x), before, rtol=0, atol=1e-6)


def test_depth_scores_match_the_lesion_and_block_influence_formulas():
    torch.manual_seed(0)
    r = ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[2, 1, 1]).eval()
    x = torch.randn(2, 1, 16, 16)
    cands = candidates(r, x)
    assert cands == ["stages.0.0", "stages.0.1"]  # the others change the shape (stride / width)
    data = TensorDataset(torch.randn(16, 1, 16, 16), torch.randint(0, 10, (16,)))
    got = block_scores(r, cands, data, criterion="loss", batches=1)
    xs, ys = data.tensors
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    xs, ys = xs[perm], ys[perm]
    with torch.no_grad():
        base = F.cross_entropy(r(xs), ys)
        blk = r.stages[0][1]
        r.stages[0][1] = torch.nn.Identity()
        lesion = F.cross_entropy(r(xs), ys)
        r.stages[0][1] = blk
        assert got["stages.0.1"] == pytest.approx(float(lesion - base), rel=1e-5, abs=1e-6)
        cos = block_scores(r, cands, data, criterion="cosine", batches=1)
        a = r.stages[0][0](r.stem(xs))
        b = r.stages[0][1](a)
        want = 1 - F.cosine_similarity(a.flatten(2), b.flatten(2), dim=1).mean()
    assert cos["stages.0.1"] == pytest.approx(float(want), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("method, field, value", [
    ("channel_prune", "sparsity", 1.0), ("channel_prune", "rounds", 0), ("channel_prune", "max_sparsity", 1.0),
    ("channel_prune", "kinds", ["rows"]), ("depth_prune", "blocks", 0), ("depth_prune", "criterion", "l1"),
])
def test_bad_values_name_the_field(method, field, value):
    with pytest.raises(ns.RecipeError, match=field):
        ns.create(method, **{field: value})


def test_too_many_blocks_is_a_clear_error():
    r = ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[1, 1, 1])
    with pytest.raises(ns.RecipeError, match="removable"):
        ns.create("depth_prune", blocks=3).prepare(r, PrepareContext(data=TensorDataset(
            torch.randn(4, 1, 16, 16), torch.zeros(4, dtype=torch.long))))


def test_rnn_gate_row_masks_and_round_to():
    from netshrink.structure import shrink
    torch.manual_seed(0)
    m = ns.zoo.models.create("lstm", input_size=4, hidden_size=6, num_layers=1).eval()
    rows = torch.zeros(24, dtype=torch.bool)
    rows[[2, 8, 14, 20]] = True          # every gate row of unit 2
    rows[[5, 11]] = True                 # only two gates of unit 5: not dead
    info = shrink(m, torch.zeros(2, 3, 4), remove={"rnn.weight_hh_l0": rows, "rnn.weight_ih_l0": rows})
    assert m.rnn.hidden_size == 5 and info["removed"] == {"rnn": 1}
    r = ns.zoo.models.create("resnet_small", widths=[16, 32, 32], blocks=[1, 1, 1])
    method = ns.create("channel_prune", sparsity=0.4, scope="global", round_to=8)
    method.prepare(r, PrepareContext(data=TensorDataset(torch.randn(4, 1, 16, 16), torch.zeros(4, dtype=torch.long))))
    assert all(c.out_channels % 8 == 0 for c in r.modules() if isinstance(c, torch.nn.Conv2d))
