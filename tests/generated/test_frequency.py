"""DCT against scipy's orthonormal DCT-II; exact round trips; the frequency method
keeps the highest-energy coefficients and reproduces the layer at full coefficients."""
import numpy as np
import pytest
import scipy.fft
import torch

import netshrink as ns
from netshrink.functional.dct import dct2, dct_matrix, from_blocks, idct2, to_blocks
from netshrink.methods.frequency import kmeans_levels
from netshrink.reparams.frequency import to_coef
from netshrink.runtime.frequency import FrequencyLinear


def test_dct_matches_scipy_and_is_orthonormal():
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    ref = scipy.fft.dctn(x.numpy(), type=2, norm="ortho", axes=(-2, -1))
    assert np.allclose(dct2(x).numpy(), ref, atol=1e-12)
    c = dct_matrix(8, dtype=torch.float64)
    assert torch.allclose(c @ c.T, torch.eye(8, dtype=torch.float64), atol=1e-13)


def test_inverse_dct_is_exact_at_full_coefficients():
    x = torch.randn(4, 6, 5, 5, dtype=torch.float64)
    assert torch.allclose(idct2(dct2(x)), x, atol=1e-13, rtol=0)
    w = torch.randn(10, 13)
    blocks = to_blocks(w, block=4)                    # padded to 12 x 16
    assert blocks.shape == (3, 4, 4, 4)
    assert torch.equal(from_blocks(blocks, rows=10, cols=13), w)
    assert torch.allclose(from_blocks(idct2(dct2(blocks)), rows=10, cols=13), w, atol=1e-6)


def test_full_coefficients_reproduce_the_model(digits):
    train, test = digits
    torch.manual_seed(0)
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    x = torch.stack([test[i][0] for i in range(32)])
    with torch.no_grad():
        before = model(x)
    ns.compress_(model, ns.Recipe.of(ns.create("frequency", sparsity=0.0, bits=0)), data=None)
    assert isinstance(model.fc1, FrequencyLinear)
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-5)


def test_keeps_the_highest_energy_coefficients():
    torch.manual_seed(0)
    model = ns.zoo.models.create("lenet5", input_size=28)
    w = model.conv2.weight.detach().clone()
    ns.compress_(model, ns.Recipe.of(ns.create("frequency", sparsity=0.9, bits=0, targets=["conv2.weight"])), data=None)
    coef = torch.from_numpy(scipy.fft.dctn(w.double().numpy(), type=2, norm="ortho", axes=(-2, -1))).float()
    kept = model.conv2.coef != 0
    assert int(kept.sum()) == round(0.1 * coef.numel())
    assert coef.abs()[kept].min() >= coef.abs()[~kept].max() - 1e-6
    assert torch.allclose(model.conv2.coef[kept], coef[kept], atol=1e-5)


def test_kmeans_levels_hand_case_and_validation():
    c, idx = kmeans_levels(torch.tensor([0.1, 0.2, 0.9, 1.0, -3.0]), k=4)
    # Linear init over [-3, 1]: -3, -5/3, -1/3, 1 -> {-3}, {}, {0.1, 0.2}, {0.9, 1.0}; the
    # empty cluster is dropped.
    assert torch.allclose(c, torch.tensor([-3.0, 0.15, 0.95]))
    assert idx.tolist() == [1, 1, 2, 2, 0]
    c, idx = kmeans_levels(torch.tensor([0.1, 0.2, 0.9, 1.0, -3.0]), k=3)  # init -3, -1, 1
    assert torch.allclose(c, torch.tensor([-3.0, 0.55])) and idx.tolist() == [1, 1, 1, 1, 0]
    with pytest.raises(ns.RecipeError, match="sparsity"):
        ns.create("frequency", sparsity=1.0)
    with pytest.raises(ns.RecipeError, match="bits"):
        ns.create("frequency", bits=9)


def test_to_coef_layouts():
    w = torch.randn(10, 20)
    assert to_coef(w, layout="block", block=8).shape == (2, 3, 8, 8)
    assert to_coef(torch.randn(2, 3, 5, 5), layout="conv", block=8).shape == (2, 3, 5, 5)
