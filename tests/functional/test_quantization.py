"""The pure maths of issue 4 against references: hand-computed cases, a brute-force
Lloyd, torch's fake_quantize built-ins and torch.distributions."""
import math

import torch

from netshrink.functional import mixture
from netshrink.functional.kmeans1d import kmeans1d, linear_init
from netshrink.functional.quantize import binarize, calibrate, quantize_weight, ternarize, to_rows


def test_kmeans_hand_case():
    c, idx = kmeans1d(torch.tensor([0.1, 0.2, 0.9, 1.0]), k=2)
    assert torch.allclose(c, torch.tensor([0.15, 0.95]))
    assert idx.tolist() == [0, 0, 1, 1]


def _brute_lloyd(x, c, iters):
    # Reference: argmin over |x - c| and plain means; float64.
    for _ in range(iters):
        idx = torch.argmin((x[:, None] - c[None, :]).abs(), dim=1)
        c = torch.stack([x[idx == j].mean() if bool((idx == j).any()) else c[j] for j in range(c.numel())])
    return c, torch.argmin((x[:, None] - c[None, :]).abs(), dim=1)


def test_kmeans_matches_brute_force_lloyd_with_linear_init():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, generator=g, dtype=torch.float64) * 0.05
    ref_c, ref_idx = _brute_lloyd(x, linear_init(x, k=16), iters=300)
    c, idx = kmeans1d(x, k=16, iters=300, tol=0.0)
    assert linear_init(x, k=4).tolist() == torch.linspace(float(x.min()), float(x.max()), 4,
                                                           dtype=torch.float64).tolist()
    assert torch.allclose(c.double(), ref_c, atol=1e-6)
    assert torch.equal(idx, ref_idx)


def test_uniform_quantization_matches_torch_fake_quantize():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 20, generator=g)
    # per-tensor affine, 8 bits (torch: quint8 range 0..255)
    w_hat, _, s, z = quantize_weight(w, bits=8, symmetric=False, granularity="tensor")
    ref = torch.fake_quantize_per_tensor_affine(w, float(s), int(z), 0, 255)
    assert torch.allclose(w_hat, ref, atol=1e-6)
    # per-channel symmetric, 4 bits (restricted range -7..7)
    w_hat, _, s, z = quantize_weight(w, bits=4, symmetric=True, granularity="channel")
    ref = torch.fake_quantize_per_channel_affine(w, s.reshape(-1), z.reshape(-1).int(), 0, -7, 7)
    assert torch.allclose(w_hat, ref, atol=1e-6)
    assert all(torch.unique(r).numel() <= 15 for r in w_hat)


def test_ste_gradient_matches_torch_fake_quantize():
    from netshrink.reparams.quant import FakeQuant

    g = torch.Generator().manual_seed(2)
    w0 = torch.randn(5, 12, generator=g)
    rp = FakeQuant(w0, bits=3, symmetric=True, granularity="channel", group_size=4,
                   calibration="percentile", percentile=90.0)
    w = w0.clone().requires_grad_(True)
    (rp(w) * torch.arange(60.0).reshape(5, 12)).sum().backward()
    w2 = w0.clone().requires_grad_(True)
    ref = torch.fake_quantize_per_channel_affine(w2, rp.scale.reshape(-1), rp.zero_point.reshape(-1).int(), 0, -3, 3)
    (ref * torch.arange(60.0).reshape(5, 12)).sum().backward()
    assert torch.allclose(rp(w0), ref, atol=1e-6)
    assert torch.equal(w.grad, w2.grad)
    assert bool((w.grad == 0).any())        # percentile clipping: some weights get no gradient


def test_group_rows_and_mse_calibration():
    w = torch.randn(4, 8, generator=torch.Generator().manual_seed(3))
    assert to_rows(w, granularity="group", group_size=4).shape == (8, 4)
    rows = to_rows(w, granularity="channel")
    errs = {}
    for m in ("minmax", "mse"):
        s, z = calibrate(rows, bits=2, symmetric=True, method=m)
        w_hat, _, _, _ = quantize_weight(w, bits=2, granularity="channel", scale=s, zero_point=z)
        errs[m] = float(((w_hat - w) ** 2).sum())
    assert errs["mse"] <= errs["minmax"] + 1e-9


def test_ternary_hand_case():
    w_t, delta, alpha = ternarize(torch.tensor([-1.0, -0.2, 0.05, 0.5, 1.5]))
    # mean|w| = 0.65, delta = 0.455, alpha = mean(1.0, 0.5, 1.5) = 1.0
    assert math.isclose(float(delta), 0.455, rel_tol=1e-6) and math.isclose(float(alpha), 1.0, rel_tol=1e-6)
    assert w_t.tolist() == [-1.0, 0.0, 0.0, 1.0, 1.0]


def test_binary_xnor_scaling():
    w = torch.tensor([[0.5, -1.5, 0.0], [-0.1, 0.2, 0.3]])
    b = binarize(w, scaling="channel")
    assert torch.allclose(b, torch.tensor([[2 / 3, -2 / 3, 2 / 3], [-0.2, 0.2, 0.2]]))
    assert binarize(w, scaling="none").abs().unique().tolist() == [1.0]


def test_mixture_log_prob_matches_torch_distributions():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(100, generator=g) * 0.1
    means, lp = torch.tensor([0.0, -0.1, 0.2]), torch.tensor([6.0, 5.0, 4.0])
    pis = torch.tensor([0.9, 0.04, 0.06])
    ours = mixture.log_prob(w, means=means, log_precisions=lp, log_pis=torch.log(pis))
    ref = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(pis),
                                                torch.distributions.Normal(means, torch.exp(-lp / 2)))
    assert torch.allclose(ours, ref.log_prob(w).sum(), rtol=1e-5)


def test_merge_and_snap():
    means = torch.tensor([0.0, 0.3, 0.3001, -0.5])
    var = torch.tensor([1e-4, 1e-3, 1e-3, 1e-3])
    pis = torch.tensor([0.9, 0.05, 0.03, 0.02])
    m, v, p = mixture.merge_components(means, var, pis, threshold=0.1)
    assert m.numel() == 3 and float(m[0]) == 0.0
    assert math.isclose(float(p.sum()), 1.0, rel_tol=1e-6)
    assert any(math.isclose(float(x), (0.05 * 0.3 + 0.03 * 0.3001) / 0.08, rel_tol=1e-6) for x in m)
    w = torch.tensor([0.001, 0.29, -0.45, 0.0])
    snapped = mixture.snap(w, means=m, variances=v, pis=p)
    assert snapped[0] == 0 and snapped[3] == 0 and snapped[2] == float(m[2].float())
    assert set(snapped.tolist()) <= set(m.float().tolist()) | {0.0}
