"""Issue 4's methods against references: Deep Compression's centroid gradient (sum of the
members' gradients), Ullrich's penalty formula, STE training, validation, and the
end-to-end claim that a pruned + shared model is small on disk."""
import pytest
import torch
from torch import nn

import netshrink as ns
from netshrink.core.context import PrepareContext, StepContext
from netshrink.errors import RecipeError
from netshrink.functional import mixture
from netshrink.functional.kmeans1d import kmeans1d
from netshrink.reparams.codebook import Codebook


def _mlp(seed=0):
    torch.manual_seed(seed)
    return ns.zoo.models.create("lenet300_100", in_features=64)


def test_kmeans_keeps_zeros_and_centroid_gradient_is_sum_of_members():
    model = _mlp()
    with torch.no_grad():
        model.fc2.weight[:, :150] = 0.0                      # "pruned"
    w_before = model.fc2.weight.detach().clone()
    method = ns.create("kmeans", bits=3)
    method.prepare(model, PrepareContext())
    rp = [m for m in model.fc2.parametrizations.weight if isinstance(m, Codebook)][0]
    # Reference clustering: k-means of the non-zero weights only.
    ref_c, ref_idx = kmeans1d(w_before[w_before != 0], k=8)
    assert torch.equal(rp.centroids.detach(), ref_c)
    w = model.fc2.weight
    assert bool((w[:, :150] == 0).all()) and torch.unique(w).numel() <= 9
    # Gradient of the centroids = scatter-add of dL/dw over each cluster's members.
    x = torch.randn(16, 64)
    w_eff = model.fc2.weight
    w_eff.retain_grad()
    out = model.fc3(torch.relu(nn.functional.linear(torch.relu(model.fc1(x)), w_eff, model.fc2.bias)))
    out.square().sum().backward()
    g = w_eff.grad
    expected = torch.zeros(8).index_add_(0, rp.index[rp.keep], g[rp.keep])
    assert torch.allclose(rp.centroids.grad, expected, rtol=1e-5, atol=1e-7)
    method.finalize(model)
    assert not hasattr(model.fc2, "parametrizations")
    assert set(torch.unique(model.fc2.weight).tolist()) <= set(rp.centroids.detach().tolist()) | {0.0}


def test_soft_sharing_penalty_is_tau_over_n_times_neg_log_prior():
    model = _mlp(1)
    data = torch.utils.data.TensorDataset(torch.zeros(200, 64), torch.zeros(200, dtype=torch.long))   # N = 200 samples (a list would be batches)
    m = ns.create("soft_sharing", tau=0.05, components=5)
    m.prepare(model, PrepareContext(data=data))               # no fit: the user's loop
    prior = m.prior_
    means, lp, log_pis = prior.params()
    ws = [s.tensor for s in m.sites_]
    logp = sum(mixture.log_prob(w, means=means, log_precisions=lp, log_pis=log_pis) for w in ws)
    lam = torch.exp(lp)
    hyper = ((prior.gamma_alpha - 1) * lp - prior.gamma_beta * lam).sum()
    expected = 0.05 / 200 * -(logp + hyper)
    assert torch.allclose(m.loss(StepContext(model=model)), expected)
    assert abs(float(torch.exp(log_pis.detach()).sum()) - 1) < 1e-6 and abs(float(torch.exp(log_pis.detach()[0])) - 0.999) < 1e-6
    m.finalize(model)
    vals = torch.unique(torch.cat([s.tensor.detach().reshape(-1) for s in ns.select(model)]))
    assert vals.numel() <= 5 and bool((vals == 0).any())


def test_qat_trains_shadow_weights_through_ste():
    model = _mlp(2)
    train, _ = ns.zoo.data.load("digits", 0)
    train = torch.utils.data.Subset(train, range(256))
    before = model.fc1.weight.detach().clone()
    m = ns.create("qat", bits=2, granularity="tensor")
    ns.compress_(model, ns.Recipe.of(m, finetune=ns.TrainConfig(epochs=1)), data=train, progress=False)
    w = model.fc1.weight.detach()
    assert torch.unique(w).numel() <= 3 and not torch.equal(w, before)


def test_binary_clips_shadow_weights():
    model = _mlp(3)
    with torch.no_grad():
        model.fc1.weight.mul_(100)
    m = ns.create("binary", scaling="none", clip=1.0)
    m.prepare(model, PrepareContext())
    m.after_step(StepContext(model=model))
    shadow = model.fc1.parametrizations.weight.original
    assert float(shadow.abs().max()) <= 1.0
    assert torch.unique(model.fc1.weight).tolist() == [-1.0, 1.0]


@pytest.mark.parametrize("name, params, field", [
    ("quantize", {"bits": 9}, "bits"), ("quantize", {"bits": 4, "execute": "int8"}, "bits"),
    ("qat", {"percentile": 20.0}, "percentile"), ("kmeans", {"bits": 0}, "bits"),
    ("kmeans", {"per_layer": {"fc1.weight": 12}}, "per_layer"), ("ternary", {"delta_factor": -1.0}, "delta_factor"),
    ("soft_sharing", {"pi_zero": 1.5}, "pi_zero"), ("soft_sharing", {"gamma_zero": [1.0]}, "gamma_zero"),
    ("binary", {"clip": 0.0}, "clip")])
def test_bad_values_name_the_field(name, params, field):
    with pytest.raises(RecipeError, match=field):
        ns.create(name, **params)


def test_ptq_does_not_finetune_and_int8_rejects_conv():
    assert ns.create("quantize").finetunes is False
    model = ns.zoo.models.create("lenet5", input_size=16)
    with pytest.raises(RecipeError, match="Linear"):
        ns.create("quantize", execute="int8").prepare(model, PrepareContext())


def test_pruned_and_shared_model_is_small_on_disk(tmp_path):
    """Deep Compression in miniature: 90 % pruned + 4-bit sharing; the codec must find the
    sparse + codebook encodings, so the file is far below dense fp32."""
    from netshrink.codec import inspect_archive

    model = _mlp(4)
    recipe = ns.Recipe.of(ns.create("magnitude", sparsity=0.9, runtime="dense"), ns.create("kmeans", bits=4),
                          finetune=ns.TrainConfig(epochs=0))
    ns.compress_(model, recipe, data=None, progress=False)
    size = ns.save(model, tmp_path / "m.nshr")
    dense = 4 * sum(p.numel() for p in model.parameters())
    assert dense / size > 15, f"storage ratio {dense / size:.1f}"
    rows = inspect_archive(tmp_path / "m.nshr")
    text = str(rows)
    assert "cb" in text or "codebook" in text
