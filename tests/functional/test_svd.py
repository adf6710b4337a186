"""Low-rank maths against references: Eckart–Young, exact products, the whitened optimum."""
import math

import pytest
import torch
from torch import nn

from netshrink.functional import svd as F
from netshrink.runtime.low_rank import LowRankLinear, LowRankRNN, TuckerConv


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def test_truncation_error_is_the_discarded_energy():
    w = torch.randn(40, 25, generator=_g(), dtype=torch.float64)
    s = torch.linalg.svdvals(w)
    for r in (1, 5, 12, 24):
        a, b = F.truncated_svd(w, rank=r)
        err2 = (w - a @ b).pow(2).sum()
        assert torch.allclose(err2, s[r:].pow(2).sum(), rtol=1e-10)
        assert torch.allclose(F.truncation_error(s, rank=r), err2.sqrt(), rtol=1e-10)
        # the layer module computes the same approximation
        lr = LowRankLinear.from_factors(a, b).double()
        assert torch.allclose((lr.dense_weight() - w).pow(2).sum(), s[r:].pow(2).sum(), rtol=1e-10)


def test_low_rank_linear_at_full_rank_reproduces_the_layer():
    torch.manual_seed(0)
    lin = nn.Linear(12, 7).double()
    a, b = F.truncated_svd(lin.weight.detach(), rank=7)
    lr = LowRankLinear.from_factors(a, b, lin.bias.detach()).double()
    x = torch.randn(5, 12, dtype=torch.float64)
    assert torch.allclose(lr(x), lin(x), atol=1e-12)
    assert lr.weight_counts() == (12 * 7, 7 * (12 + 7))


@pytest.mark.parametrize("dims, padding", [(2, 1), (2, "same"), (1, 2)])
def test_tucker_conv_at_full_ranks_reproduces_the_conv(dims, padding):
    torch.manual_seed(0)
    conv = (nn.Conv2d(6, 8, 3, padding=padding) if dims == 2 else nn.Conv1d(6, 8, 5, padding=padding)).double()
    u_out, core, u_in = F.tucker2(conv.weight.detach(), ranks=(8, 6))
    tc = TuckerConv.from_factors(conv, u_out, core, u_in).double()
    x = torch.randn(2, 6, *([9] * dims), dtype=torch.float64)
    assert torch.allclose(tc(x), conv(x), atol=1e-10)
    assert torch.allclose(tc.dense_weight(), conv.weight, atol=1e-12)


def test_tucker_hooi_never_worsens_hosvd():
    w = torch.randn(16, 12, 3, 3, generator=_g(1), dtype=torch.float64)
    errs = []
    for iters in (0, 1, 3):
        u_out, core, u_in = F.tucker2(w, ranks=(6, 5), iters=iters)
        errs.append(float((F.tucker2_compose(u_out, core, u_in) - w).norm()))
    assert errs[1] <= errs[0] + 1e-9 and errs[2] <= errs[1] + 1e-9
    r_out, r_in = F.tucker2_ranks_for_ratio((16, 12, 3, 3), ratio=0.3)
    assert 12 * r_in + r_in * r_out * 9 + r_out * 16 <= 0.3 * 16 * 12 * 9


def test_whitened_factors_reach_the_output_error_optimum():
    # inputs with very unequal variances: plain SVD ignores them, whitening does not
    g = _g(2)
    x = torch.randn(2000, 20, generator=g, dtype=torch.float64) * torch.logspace(1, -2, 20, dtype=torch.float64)
    w = torch.randn(30, 20, generator=g, dtype=torch.float64)
    chol = F.whitening(F.input_moment(x), damp=0.0)
    r = 4
    a, b = F.whitened_factors(w, chol, rank=r)
    pa, pb = F.truncated_svd(w, rank=r)
    n = x.shape[0]
    aware = ((w - a @ b) @ x.T).pow(2).sum() / n
    plain = ((w - pa @ pb) @ x.T).pow(2).sum() / n
    # the optimum of ‖(W − W_r) X‖² / N is the discarded energy of W L
    s = F.whitened_spectrum(w, chol)
    assert torch.allclose(aware, s[r:].pow(2).sum(), rtol=1e-6)
    assert aware < plain


def test_rank_selection_rules():
    s = torch.tensor([4.0, 2.0, 1.0, 1.0])              # energies 16, 4, 1, 1 of 22
    assert F.rank_for_energy(s, energy=16 / 22) == 1
    assert F.rank_for_energy(s, energy=0.8) == 2
    assert F.rank_for_energy(s, energy=1.0) == 4
    assert F.rank_for_ratio((300, 100), ratio=0.25) == math.floor(0.25 * 300 * 100 / 400)
    assert F.max_useful_rank((300, 100)) == 74            # 75 · 400 = 30,000 is not smaller


def test_budget_allocation_respects_the_budget_and_favours_energy():
    g = _g(3)
    # layer 0: energy concentrated in 3 directions; layer 1: flat spectrum
    u, _ = torch.linalg.qr(torch.randn(60, 40, generator=g))
    w0 = u[:, :3] @ torch.randn(3, 40, generator=g) * 10 + 0.01 * torch.randn(60, 40, generator=g)
    w1 = torch.randn(50, 40, generator=g)
    spectra = [torch.linalg.svdvals(w0), torch.linalg.svdvals(w1)]
    shapes = [(60, 40), (50, 40)]
    ranks = F.allocate_ranks(spectra, shapes, ratio=0.3)
    spent = sum(r * (m + n) for r, (m, n) in zip(ranks, shapes))
    assert spent <= 0.3 * (60 * 40 + 50 * 40)
    assert ranks[0] >= 3 and ranks[1] > ranks[0]


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_low_rank_rnn_at_full_rank_reproduces_the_rnn(cell):
    torch.manual_seed(0)
    rnn = cell(8, 16, 2, batch_first=True).double()
    factors = {n: F.truncated_svd(p.detach(), rank=min(p.shape)) for n, p in rnn.named_parameters()
               if n.startswith("weight")}
    m = LowRankRNN.from_rnn(rnn, factors)
    x = torch.randn(3, 5, 8, dtype=torch.float64)
    assert torch.allclose(m(x)[0], rnn(x)[0], atol=1e-12)
    assert not any(n.startswith("rnn.weight") for n in m.state_dict())      # only the factors are stored
    rebuilt = LowRankRNN.from_ns_config(m.ns_config()).double()
    rebuilt.load_state_dict(m.state_dict())
    assert torch.equal(rebuilt(x)[0], m(x)[0])
