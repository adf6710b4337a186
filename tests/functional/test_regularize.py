"""The pure maths of issue 5 against references: numerical integration of the true KL,
hand-computed hard-concrete values, brute-force Hier-Prox, closed-form group prox."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize

from netshrink.functional import hard_concrete as hc
from netshrink.functional.groups import expand, group_matrix, group_norms
from netshrink.functional.prox import group_soft_threshold, hier_prox, soft_threshold, sparse_group_prox
from netshrink.functional.vd import kl_approx, linear_variance, log_alpha


# -- sparse VD: the KL approximation --------------------------------------------
def _neg_kl_true(la: float) -> float:
    """-KL(N(theta, alpha theta^2) || log-uniform) up to the constant that makes it 0
    as alpha -> inf: 1/2 log alpha - E_{eps ~ N(1, alpha)} log|eps| + C, with
    C = -(euler_gamma + log 2) / 2 (the limit of E log|xi|, xi ~ N(0, 1), is -(gamma+log 2)/2)."""
    a = math.exp(la)
    s = math.sqrt(a)
    dens = lambda e: math.exp(-((e - 1) ** 2) / (2 * a)) / math.sqrt(2 * math.pi * a) * math.log(abs(e))
    lo, hi = 1 - 40 * s, 1 + 40 * s
    parts = [(lo, 0.0), (0.0, hi)] if lo < 0 < hi else [(lo, hi)]
    e_log = sum(integrate.quad(dens, p, q, points=None, limit=400, epsabs=1e-11)[0] for p, q in parts)
    c = -(np.euler_gamma + math.log(2)) / 2
    return 0.5 * la - e_log + c


def test_kl_approximation_matches_numerical_integration():
    # Molchanov et al. report the approximation error below 0.01 for all alpha; we
    # check |approx - true| <= 0.01 on log alpha in [-6, 6].
    grid = np.linspace(-6, 6, 25)
    approx = -kl_approx(torch.tensor(grid, dtype=torch.float64)).numpy()
    true = np.array([_neg_kl_true(x) for x in grid])
    err = np.abs(approx - true)
    assert err.max() <= 0.01, f"max error {err.max():.4f} at log alpha {grid[err.argmax()]}"
    # and the KL is not trivially flat: it spans more than 2 nats over the grid
    assert true.max() - true.min() > 2


def test_log_alpha_is_clipped_and_kl_decreases_with_alpha():
    la = log_alpha(torch.tensor([1.0, 1e-6]), torch.tensor([0.0, 0.0]))
    assert la[0] == 0 and la[1] == 10.0
    kl = kl_approx(torch.linspace(-8, 8, 50))
    assert (kl[1:] < kl[:-1]).all()


def test_linear_variance_is_the_variance_of_sampled_weights():
    g = torch.Generator().manual_seed(0)
    x, s2 = torch.randn(3, 5, generator=g), torch.rand(4, 5, generator=g)
    w = torch.randn(20000, 4, 5, generator=g) * s2.sqrt()          # 20000 weight samples
    samples = torch.einsum("ni,soi->sno", x, w)                    # (samples, 3, 4)
    torch.testing.assert_close(samples.var(0), linear_variance(x, s2), rtol=0.05, atol=1e-3)


# -- hard concrete -------------------------------------------------------------------
def test_hard_concrete_sample_by_hand():
    # u = 0.5 -> log u - log(1-u) = 0, s = sigmoid(log_alpha / beta)
    la = torch.tensor([0.0, 1.0, -3.0])
    z = hc.sample(la, u=torch.full((3,), 0.5))
    by_hand = [min(1, max(0, 1 / (1 + math.exp(-v / (2 / 3))) * 1.2 - 0.1)) for v in (0.0, 1.0, -3.0)]
    torch.testing.assert_close(z, torch.tensor(by_hand))
    # u = 0.9, log_alpha = 0: s = sigmoid(log 9 * 1.5) = 9^1.5 / (1 + 9^1.5) = 27/28
    z = hc.sample(torch.tensor([0.0]), u=torch.tensor([0.9]))
    torch.testing.assert_close(z, torch.tensor([min(1.0, 27 / 28 * 1.2 - 0.1)]))
    # far negative log alpha: exactly zero (the stretch below 0 is clipped)
    assert hc.sample(torch.tensor([-20.0]), u=torch.tensor([0.5])).item() == 0.0


def test_hard_concrete_test_gate_and_l0_by_hand():
    # sigmoid(0) * 1.2 - 0.1 = 0.5; sigmoid(log 11) = 11/12 -> 1.1 - 0.1 = 1.0; below 1/12 -> 0
    torch.testing.assert_close(hc.test_gate(torch.tensor([0.0, math.log(11), math.log(1 / 11) - 0.1])),
                               torch.tensor([0.5, 1.0, 0.0]))
    # P(z != 0) = sigmoid(log alpha - beta log(-gamma/zeta)) = sigmoid(0 + 2/3 log 11)
    p = hc.prob_nonzero(torch.tensor([0.0]))
    torch.testing.assert_close(p, torch.tensor([1 / (1 + 11 ** (-2 / 3))]))
    # ... and agrees with the Monte-Carlo frequency of non-zero samples
    la = torch.full((200000,), 0.7)
    assert abs(float((hc.sample(la) > 0).float().mean()) - float(hc.prob_nonzero(la[:1]))) < 0.005


# -- proximal operators ----------------------------------------------------------------
def test_group_prox_matches_closed_form():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 5, generator=g)
    t = 1.3
    out = group_soft_threshold(w, t=t, direction="in")
    for j in range(5):                     # each column: max(0, 1 - t/||w_j||) w_j
        col = w[:, j]
        expect = max(0.0, 1 - t / float(col.norm())) * col
        torch.testing.assert_close(out[:, j], expect)
    # it is the minimiser of 1/2||v - w||^2 + t sum ||v_g||: no random perturbation does better
    obj = lambda v: 0.5 * ((v - w) ** 2).sum() + t * v.norm(dim=0).sum()  # noqa: E731
    best = obj(out)
    for _ in range(200):
        assert obj(out + 1e-2 * torch.randn(6, 5, generator=g)) >= best - 1e-6
    # sparse group lasso prox = l1 prox then group prox
    torch.testing.assert_close(sparse_group_prox(w, t_l1=0.3, t_group=t, direction="in"),
                               group_soft_threshold(soft_threshold(w, t=0.3), t=t, direction="in"))


def test_lstm_unit_groups_span_the_gates():
    w = torch.arange(4 * 3 * 2, dtype=torch.float32).reshape(12, 2)   # 4 gates x 3 units, 2 inputs
    gm = group_matrix(w, direction="out", gates=4)
    assert gm.shape == (3, 8)
    assert set(gm[1].tolist()) == set(w[[1, 4, 7, 10]].flatten().tolist())
    mask = expand(torch.tensor([1.0, 0.0, 1.0]), w.shape, direction="out", gates=4)
    assert ((w * mask)[[1, 4, 7, 10]] == 0).all() and (group_norms(w * mask, direction="out", gates=4)[1] == 0)


def _hier_brute(v: np.ndarray, u: np.ndarray, lam: float, M: float) -> float:
    """Optimal objective of min 1/2||v-b||^2 + 1/2||u-w||^2 + lam||b|| s.t. ||w||_inf <= M||b||,
    by a 1-D search over r = ||b|| (for fixed r the best b is r v/||v|| and the best w
    clips u to [-M r, M r])."""
    nv = np.linalg.norm(v)
    f = lambda r: 0.5 * (nv - r) ** 2 + lam * r + 0.5 * np.sum(np.maximum(np.abs(u) - M * r, 0) ** 2)  # noqa: E731
    hi = nv + np.abs(u).sum() + 1
    grid = np.linspace(0, hi, 20001)
    values = 0.5 * (nv - grid) ** 2 + lam * grid + 0.5 * (np.maximum(np.abs(u)[None] - M * grid[:, None], 0) ** 2).sum(1)
    r0 = grid[np.argmin(values)]
    res = optimize.minimize_scalar(f, bounds=(max(0, r0 - hi / 1e4), r0 + hi / 1e4), method="bounded",
                                   options={"xatol": 1e-12})
    return min(f(res.x), f(0.0))


@pytest.mark.parametrize("seed", range(8))
def test_hier_prox_solves_its_problem(seed):
    g = torch.Generator().manual_seed(seed)
    d, k, h = 6, 1 + seed % 3, 5
    theta = torch.randn(d, k, generator=g, dtype=torch.float64)
    W = torch.randn(d, h, generator=g, dtype=torch.float64) * 2
    lam, M = [0.1, 0.5, 1.5, 3.0][seed % 4], [1.0, 10.0, 0.5][seed % 3]
    t, w = hier_prox(theta, W, lam=lam, M=M)
    for j in range(d):
        v, u = theta[j].numpy(), W[j].numpy()
        b, x = t[j].numpy(), w[j].numpy()
        # feasible
        assert np.abs(x).max() <= M * np.linalg.norm(b) + 1e-9
        got = 0.5 * np.sum((v - b) ** 2) + 0.5 * np.sum((u - x) ** 2) + lam * np.linalg.norm(b)
        assert got <= _hier_brute(v, u, lam, M) + 1e-7, f"feature {j}: not optimal"
    # one-dimensional theta (a single output) works the same way
    t1, w1 = hier_prox(theta[:, 0], W, lam=lam, M=M)
    t2, w2 = hier_prox(theta[:, :1], W, lam=lam, M=M)
    torch.testing.assert_close(t1, t2[:, 0])
    torch.testing.assert_close(w1, w2)


def test_hier_prox_large_lambda_kills_the_feature():
    t, w = hier_prox(torch.tensor([[0.1]]), torch.tensor([[0.01, -0.02]]), lam=10.0, M=10.0)
    assert (t == 0).all() and (w == 0).all()


def test_hier_prox_numpy_row_sort_matches_torch_sort():
    from netshrink.functional.prox import _sort_rows_descending
    g = torch.Generator().manual_seed(3)
    for dtype in (torch.float32, torch.float64):
        a = torch.randn(37, 29, generator=g, dtype=dtype).abs()
        a[0, :5] = 0.5                                             # ties
        got = _sort_rows_descending(a)
        assert got.dtype == dtype and got.shape == a.shape
        torch.testing.assert_close(got, torch.sort(a, dim=1, descending=True).values, rtol=0, atol=0)
