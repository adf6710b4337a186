"""Soft weight-sharing (Ullrich, Meeds & Welling 2017) against hand-computed cases: the
mixture log-prior and its gradient on a tiny tensor against the direct formula, the
Gamma hyperprior, the KL merge and the snap on hand-built mixtures, the prior's start
(means over the weight range, wide components, pi_0 fixed) and the optimiser's groups."""
import math

import pytest
import torch

import netshrink as ns
from netshrink.core.context import PrepareContext
from netshrink.functional import mixture
from netshrink.reparams.codebook import MixturePrior


def _direct(w, mus, lams, pis):
    """log sum_j pi_j sqrt(lam_j / 2 pi) exp(-lam_j (w - mu_j)^2 / 2), with `math`."""
    return math.log(sum(p * math.sqrt(l / (2 * math.pi)) * math.exp(-l * (w - m) ** 2 / 2)
                        for m, l, p in zip(mus, lams, pis)))


def test_log_prior_and_gradient_match_the_direct_formula():
    ws = [0.0, 0.1, -0.07]
    mus, lams, pis = [0.0, 0.1, -0.2], [400.0, 25.0, 100.0], [0.7, 0.2, 0.1]
    w = torch.tensor(ws, dtype=torch.float64, requires_grad=True)
    means = torch.tensor(mus, dtype=torch.float64, requires_grad=True)
    lp = torch.tensor([math.log(x) for x in lams], dtype=torch.float64, requires_grad=True)
    lpi = torch.tensor([math.log(x) for x in pis], dtype=torch.float64, requires_grad=True)
    out = mixture.log_prob(w, means=means, log_precisions=lp, log_pis=lpi)
    assert math.isclose(float(out.detach()), sum(_direct(x, mus, lams, pis) for x in ws), rel_tol=1e-12)
    out.backward()
    # Hand gradients: responsibilities r_ij, d/dw_i = -sum_j r_ij lam_j (w_i - mu_j), ...
    g_w, g_mu, g_lp, g_lpi = [0.0] * 3, [0.0] * 3, [0.0] * 3, [0.0] * 3
    for i, x in enumerate(ws):
        dens = [p * math.sqrt(l / (2 * math.pi)) * math.exp(-l * (x - m) ** 2 / 2) for m, l, p in zip(mus, lams, pis)]
        r = [d / sum(dens) for d in dens]
        for j, (m, lam) in enumerate(zip(mus, lams)):
            g_w[i] -= r[j] * lam * (x - m)
            g_mu[j] += r[j] * lam * (x - m)
            g_lp[j] += r[j] * (0.5 - 0.5 * lam * (x - m) ** 2)
            g_lpi[j] += r[j]
    for t, ref in ((w, g_w), (means, g_mu), (lp, g_lp), (lpi, g_lpi)):
        assert torch.allclose(t.grad, torch.tensor(ref, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_fused_log_prior_equals_autograd_reference_in_float32():
    g = torch.Generator().manual_seed(0)
    w = (torch.randn(3, 50, generator=g) * 0.2).requires_grad_()
    params = [torch.randn(6, generator=g) * 0.3, torch.randn(6, generator=g) + 3,
              torch.log_softmax(torch.randn(6, generator=g), 0)]
    results = []
    for fn in (mixture.log_prob, mixture.log_prob_reference):
        ts = [w.detach().clone().requires_grad_()] + [p.clone().requires_grad_() for p in params]
        out = fn(ts[0], means=ts[1], log_precisions=ts[2], log_pis=ts[3])
        out.backward()
        results.append([out.detach()] + [t.grad for t in ts])
    for a, b in zip(*results):
        assert a.shape == b.shape and torch.allclose(a, b, rtol=1e-4, atol=1e-4)


def test_gamma_hyperprior_is_log_density_up_to_a_constant():
    alpha, beta = torch.tensor([5000.0, 250.0]), torch.tensor([2.0, 0.1])
    lam = torch.tensor([2000.0, 3000.0], dtype=torch.float64)
    ours = mixture.gamma_log_prob(torch.log(lam), alpha=alpha.double(), beta=beta.double())
    ref = torch.distributions.Gamma(alpha.double(), beta.double()).log_prob(lam).sum()
    const = sum(a * math.log(b) - math.lgamma(a) for a, b in zip(alpha.tolist(), beta.tolist()))
    assert math.isclose(float(ours) + const, float(ref), rel_tol=1e-9)


def test_merge_by_symmetric_kl_with_moment_matching():
    # Equal variances v: symmetric KL = (m1 - m2)^2 / v. 0.1 vs 0.105: 0.25 < 1 -> merged;
    # 0.003 vs the zero spike: 0.09 -> merged into it (mean stays exactly 0); 0.5: kept.
    v = 1e-4
    means = torch.tensor([0.0, 0.1, 0.105, 0.5, 0.003])
    pis = torch.tensor([0.9, 0.04, 0.01, 0.03, 0.02])
    m, var, p = mixture.merge_components(means, torch.full((5,), v), pis, threshold=1.0)
    assert m.tolist()[0] == 0.0 and m.numel() == 3
    merged = (0.04 * 0.1 + 0.01 * 0.105) / 0.05
    assert torch.allclose(m, torch.tensor([0.0, merged, 0.5], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(p, torch.tensor([0.92, 0.05, 0.03], dtype=torch.float64), atol=1e-7)
    ev = (0.04 * (v + 0.1 ** 2) + 0.01 * (v + 0.105 ** 2)) / 0.05 - merged ** 2
    assert math.isclose(float(var[1]), ev, rel_tol=1e-6)
    # Above the threshold nothing merges.
    m2, _, _ = mixture.merge_components(means, torch.full((5,), v), pis, threshold=0.05)
    assert m2.numel() == 5
    assert math.isclose(float(mixture.kl_gauss(torch.tensor(0.0), torch.tensor(1.0), torch.tensor(1.0),
                                                torch.tensor(2.0))), 0.5 * math.log(2), rel_tol=1e-6)


def test_snap_goes_to_the_most_responsible_component_not_the_nearest_mean():
    # Zero spike std 0.01 with pi 0.999; a component at 0.05 (std 0.02, pi 5e-4); one at -0.3.
    means = torch.tensor([0.0, 0.05, -0.3], dtype=torch.float64)
    var = torch.tensor([1e-4, 4e-4, 4e-4], dtype=torch.float64)
    pis = torch.tensor([0.999, 5e-4, 5e-4], dtype=torch.float64)
    w = torch.tensor([0.03, 0.045, -0.2, 0.0, -0.01])
    # By hand, 0.03: spike log pi N = log .999 + .5 log(1e4 / 2pi) - 4.5 = -0.815,
    # component 1: log 5e-4 + .5 log(2500 / 2pi) - 0.5 = -5.11 -> the spike (0.03 is
    # nearer 0.05). 0.045: spike -6.44, component 1 -4.64 -> 0.05.
    expected = [0.0, 0.05, -0.3, 0.0, 0.0]
    for x, e in zip(w.tolist(), expected):
        logs = [math.log(p) + 0.5 * math.log(1 / (2 * math.pi * s)) - (x - m) ** 2 / (2 * s)
                for m, s, p in zip(means.tolist(), var.tolist(), pis.tolist())]
        assert means.tolist()[max(range(3), key=logs.__getitem__)] == e
    out = mixture.snap(w, means=means, variances=var, pis=pis)
    assert out.tolist() == [0.0, float(torch.tensor(0.05)), float(torch.tensor(-0.3)), 0.0, 0.0]
    assert out.dtype == w.dtype


def test_prior_starts_like_the_authors_code():
    prior = MixturePrior(-0.6, 0.9, components=17, pi_zero=0.999)
    means, lp, log_pis = prior.params()
    assert means[0] == 0 and torch.allclose(means[1:], torch.linspace(-0.6, 0.9, 16))
    assert torch.allclose(torch.exp(-lp / 2), torch.full((17,), 0.25))
    pis = torch.exp(log_pis)
    assert math.isclose(float(pis[0]), 0.999, rel_tol=1e-6)
    assert torch.allclose(pis[1:], torch.full((16,), 0.001 / 16), rtol=1e-5)
    # pi_0 and mu_0 are not parameters: they cannot move.
    names = {n for n, _ in prior.named_parameters()}
    assert names == {"means", "log_precisions", "logits"}


def test_retraining_uses_the_papers_learning_rates_and_tau_over_n():
    torch.manual_seed(0)
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    seen = {}

    def fake_fit(model, cfg, hooks=None, optimizer=None, **kw):
        seen["groups"] = [(len(g["params"]), g["lr"], g["weight_decay"]) for g in optimizer.param_groups]

    data = torch.utils.data.TensorDataset(torch.zeros(500, 64), torch.zeros(500, dtype=torch.long))   # N = 500 samples (a list would be batches)
    m = ns.create("soft_sharing")
    assert (m.tau, m.components, m.pi_zero, m.lr_means, m.lr_prior, m.init_std) == (0.005, 17, 0.999, 1e-4, 3e-3, 0.25)
    m.prepare(model, PrepareContext(data=data, finetune=ns.TrainConfig(epochs=1, lr=5e-4, weight_decay=1e-4),
                                    fit=fake_fit))
    assert m.scale_ == pytest.approx(0.005 / 500)
    n_weights = len(list(p for p in model.parameters())) - 3            # every network tensor
    assert seen["groups"] == [(n_weights, 5e-4, 1e-4), (1, 1e-4, 0.0), (2, 3e-3, 0.0)]
