"""Randomised SVD (Halko et al.) against the exact SVD (Eckart–Young) and torch.svd_lowrank."""
import torch

from netshrink.functional.sketch import countsketch, countsketch_matrix, gaussian_sketch, randomized_svd


def _low_rank_plus_noise(m, n, k, noise, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(m, k, generator=g) @ torch.randn(k, n, generator=g) / k ** 0.5
    return a + noise * torch.randn(m, n, generator=g)


def _rel_err(a, u, s, vh):
    return float((a - (u * s) @ vh).norm() / a.norm())


def test_randomized_svd_is_within_one_percent_of_the_optimum():
    a = _low_rank_plus_noise(300, 200, 10, noise=0.3)
    s_all = torch.linalg.svdvals(a)
    optimum = float(s_all[10:].pow(2).sum().sqrt() / a.norm())
    for sketch in ("gaussian", "countsketch"):
        u, s, vh = randomized_svd(a, rank=10, sketch=sketch, generator=torch.Generator().manual_seed(1))
        assert u.shape == (300, 10) and s.shape == (10,) and vh.shape == (10, 200)
        assert _rel_err(a, u, s, vh) <= 1.01 * optimum
        assert torch.allclose(s, s_all[:10], rtol=1e-2)
    # torch's own Halko implementation (the built-in reference) lands in the same place
    tu, ts, tv = torch.svd_lowrank(a, q=20, niter=2)
    ours = randomized_svd(a, rank=10, generator=torch.Generator().manual_seed(2))
    assert abs(_rel_err(a, tu[:, :10], ts[:10], tv[:, :10].T) - _rel_err(a, *ours)) < 1e-3


def test_power_iterations_help_on_a_flat_spectrum():
    a = _low_rank_plus_noise(300, 300, 10, noise=1.0, seed=4)
    e0 = _rel_err(a, *randomized_svd(a, rank=10, power_iters=0, generator=torch.Generator().manual_seed(0)))
    e2 = _rel_err(a, *randomized_svd(a, rank=10, power_iters=2, generator=torch.Generator().manual_seed(0)))
    assert e2 < e0


def test_sketches_are_the_products_they_claim():
    a = torch.randn(30, 50)
    cs = countsketch(a, size=8, generator=torch.Generator().manual_seed(5))
    s = countsketch_matrix(50, 8, generator=torch.Generator().manual_seed(5))
    assert torch.allclose(cs, a @ s, atol=1e-5)
    assert (s.abs().sum(1) == 1).all()                           # one ±1 per row
    y = gaussian_sketch(a, size=8, generator=torch.Generator().manual_seed(6))
    omega = torch.randn(50, 8, generator=torch.Generator().manual_seed(6))
    assert torch.allclose(y, a @ omega, atol=1e-5)
