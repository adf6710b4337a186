"""SparseLinear: equals the masked dense layer, survives save -> load, counts honestly."""
import pytest
import torch
from torch import nn

import netshrink as ns
from netshrink.errors import ArtifactError
from netshrink.measure.counts import param_counts
from netshrink.measure.flops import count_flops
from netshrink.runtime.sparse_linear import SparseLinear
from netshrink.runtime.sparsify import sparsify_


def _pruned_linear(i=96, o=40, density=0.1, bias=True, seed=0):
    torch.manual_seed(seed)
    lin = nn.Linear(i, o, bias=bias)
    with torch.no_grad():
        lin.weight.mul_(torch.rand(o, i) < density)
    return lin


@pytest.mark.parametrize("bias", [True, False])
def test_outputs_equal_the_masked_dense_layer(bias):
    lin = _pruned_linear(bias=bias)
    sp = SparseLinear.from_linear(lin)
    x = torch.randn(17, 96)
    assert torch.allclose(sp(x), lin(x), atol=1e-5, rtol=1e-5)
    assert sp(torch.randn(3, 5, 96)).shape == (3, 5, 40)      # leading dims, like nn.Linear
    assert torch.equal(sp.dense_weight(), lin.weight.detach())
    assert sp.nnz == int((lin.weight != 0).sum())


def test_counts_and_flops_are_those_of_the_nonzeros():
    lin = _pruned_linear()
    sp = SparseLinear.from_linear(lin)
    nnz = int((lin.weight != 0).sum())
    assert sp.ns_counts() == (96 * 40 + 40, nnz + int((lin.bias != 0).sum()))
    dense, eff = count_flops(nn.Sequential(sp), torch.randn(4, 96))
    assert (dense, eff) == (2 * 4 * 96 * 40, 2 * 4 * nnz)


def test_pruned_model_with_sparse_runtime_survives_save_and_load(digits, tmp_path):
    train, test = digits
    torch.manual_seed(0)
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.fit(model, train, ns.TrainConfig(epochs=1), progress=False)
    ns.compress_(model, ns.Recipe.of(ns.create("magnitude", sparsity=0.9, runtime="dense")), progress=False)
    masked = ns.zoo.models.create("lenet300_100", in_features=64)
    masked.load_state_dict(model.state_dict())
    done = sparsify_(model, ["fc1", "fc2", "fc3"], runtime="sparse")
    assert set(done) == {"fc1", "fc2", "fc3"} and isinstance(model.fc1, SparseLinear)
    x = torch.stack([test[i][0] for i in range(64)])
    with torch.no_grad():
        assert torch.allclose(model(x), masked(x), atol=1e-5)
    assert param_counts(model) == param_counts(masked)
    ns.save(model, tmp_path / "m.nshr")
    loaded = ns.load(tmp_path / "m.nshr")
    assert isinstance(loaded.fc2, SparseLinear)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_auto_keeps_dense_where_sparse_does_not_pay():
    # 10 % sparse: the rule keeps it dense; "dense" never swaps
    model = nn.Sequential(_pruned_linear(density=0.9))
    assert sparsify_(model, ["0"], runtime="auto") == {} and type(model[0]) is nn.Linear
    model = nn.Sequential(_pruned_linear(density=0.01))
    assert sparsify_(model, ["0"], runtime="dense") == {} and type(model[0]) is nn.Linear


def test_corrupt_indices_are_refused():
    sp = SparseLinear.from_linear(_pruned_linear())
    state = sp.state_dict()
    state["col"] = state["col"].clone()
    state["col"][0] = 10_000
    fresh = SparseLinear.from_ns_config(sp.ns_config())
    with pytest.raises(ArtifactError):
        fresh.load_state_dict(state)
    from netshrink.artifact.architecture import build
    with pytest.raises(ArtifactError):   # what load() does with an edit read from a file
        build("SparseLinear", {"in_features": 2, "out_features": 2, "nnz": 5, "bias": True})


def test_sparse_conv_equals_the_pruned_conv_and_survives_save_load(tmp_path):
    from netshrink.runtime.sparse_conv import SparseConv2d

    torch.manual_seed(0)
    model = ns.zoo.models.create("lenet5", input_size=28)
    ns.compress_(model, ns.Recipe.of(ns.create("magnitude", sparsity=0.9, runtime="dense")), progress=False)
    masked = ns.zoo.models.create("lenet5", input_size=28)
    masked.load_state_dict(model.state_dict())
    sparsify_(model, ["conv1", "conv2", "fc1"], runtime="sparse")
    assert isinstance(model.conv2, SparseConv2d) and isinstance(model.fc1, SparseLinear)
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(model(x), masked(x), atol=1e-5)
    assert param_counts(model) == param_counts(masked)
    dense, eff = count_flops(model, x[:1])
    assert eff < 0.2 * dense                      # 90 % of the weights are skipped
    ns.save(model, tmp_path / "c.nshr")
    loaded = ns.load(tmp_path / "c.nshr")
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_auto_considers_convs_only_when_it_knows_their_input():
    from netshrink.runtime.sparse_conv import SparseConv2d

    torch.manual_seed(0)
    model = ns.zoo.models.create("lenet5", input_size=28)
    with torch.no_grad():
        model.conv2.weight.mul_(torch.rand_like(model.conv2.weight) < 0.05)
    assert sparsify_(model, ["conv2"], runtime="auto") == {}   # no input shape: left dense
    # conv2 at batch 8: 25,000 weights x 8 x 8 x 8 outputs = 12.8M multiply-adds, ~5 % dense
    done = sparsify_(model, ["conv2", "fc1"], runtime="auto", example_shape=(1, 28, 28), batch_size=8)
    assert list(done) == ["conv2"] and isinstance(model.conv2, SparseConv2d) and type(model.fc1) is nn.Linear


def test_auto_is_a_rule_of_shape_sparsity_and_batch():
    """The measured cases the rule was set from (benchmarks/pruning.md): LeNet's fc1 at
    98 % pays at batch 64, not at batch 1; a 1024x1024 layer at 95 % pays at batch 1."""
    from netshrink.runtime.sparsify import auto_picks_sparse

    assert auto_picks_sparse(0.02, 784 * 300 * 64) and not auto_picks_sparse(0.02, 784 * 300)
    assert auto_picks_sparse(0.05, 1024 * 1024) and not auto_picks_sparse(0.2, 1024 * 1024 * 64)
    for _ in range(2):   # the same model twice: the same choice (nothing is timed)
        torch.manual_seed(0)
        model = ns.zoo.models.create("lenet300_100")
        with torch.no_grad():
            for m in (model.fc1, model.fc2, model.fc3):
                m.weight.mul_(torch.rand_like(m.weight) < 0.02)
        assert list(sparsify_(model, ["fc1", "fc2", "fc3"], runtime="auto", batch_size=64)) == ["fc1", "fc2"]


def test_sparse_model_deep_copies_and_recompresses():
    # compress_ deep-copies the model as the default teacher; a model that already
    # holds CSR layers must survive that (and a second compression).
    import copy

    import netshrink as ns

    torch.manual_seed(0)
    m = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.compress_(m, ns.Recipe.of(ns.create("magnitude", sparsity=0.9, runtime="sparse",
                                           targets=["fc1.weight", "fc2.weight"])))
    x = torch.rand(3, 64)
    c = copy.deepcopy(m)
    with torch.no_grad():
        assert torch.equal(c(x), m(x))
    ns.compress_(c, ns.Recipe.of(ns.create("magnitude", sparsity=0.5, targets=["fc3.weight"], runtime="dense")))
    assert float((c.fc3.weight == 0).float().mean()) >= 0.5
