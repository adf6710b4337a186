"""HashedNets: the hash against a pure-Python reference, the hashed layer against an
explicit dense matrix built from its buckets, per-bucket gradients, the method."""
import pytest
import torch

import netshrink as ns
from netshrink.functional import hashing as H
from netshrink.runtime.hashed_linear import HashedConv2d, HashedLinear

M32 = 0xFFFFFFFF


def _mix32(x: int) -> int:  # the same integer hash, in Python ints
    x &= M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & M32
    return (x >> 16) ^ x


def _hash(i: int, j: int, seed: int, salt: int) -> int:
    key = (seed * 0x9E3779B1 + salt) & M32
    return _mix32(_mix32(_mix32(i ^ key) + 0x7F4A7C15) ^ j)


def test_hash_matches_python_reference():
    idx, sign = H.hash_index(out_features=7, in_features=11, buckets=13, seed=42)
    for i in range(7):
        for j in range(11):
            assert idx[i, j] == _hash(i, j, 42, H._SALT_BUCKET) % 13
            assert sign[i, j] == 1 - 2 * ((_hash(i, j, 42, H._SALT_SIGN) >> 15) & 1)


def test_hash_spreads_evenly_and_depends_on_seed():
    idx, sign = H.hash_index(out_features=300, in_features=100, buckets=100, seed=0)
    counts = torch.bincount(idx.reshape(-1), minlength=100).float()
    # 300 expected per bucket; a fair hash stays within ~5 sigma (sigma ~ 17).
    assert counts.min() > 200 and counts.max() < 400
    assert abs(float(sign.mean())) < 0.02
    idx2, _ = H.hash_index(out_features=300, in_features=100, buckets=100, seed=1)
    assert (idx != idx2).float().mean() > 0.9


def test_hashed_linear_equals_dense_matrix_from_buckets():
    torch.manual_seed(0)
    layer = HashedLinear(9, 5, n_buckets=6, seed=3)
    with torch.no_grad():
        layer.buckets.normal_()
        layer.bias.normal_()
    v = torch.zeros(5, 9)
    for i in range(5):
        for j in range(9):
            s = 1 - 2 * ((_hash(i, j, 3, H._SALT_SIGN) >> 15) & 1)
            v[i, j] = s * layer.buckets[_hash(i, j, 3, H._SALT_BUCKET) % 6]
    x = torch.randn(4, 9)
    layer.eval()
    with torch.no_grad():
        assert torch.allclose(layer(x), x @ v.T + layer.bias, atol=1e-6)
    conv = HashedConv2d(2, 3, 3, n_buckets=5, seed=1, padding=1).eval()
    with torch.no_grad():
        conv.buckets.normal_()
        w = H.virtual_weight(conv.buckets, idx=conv.idx, sign=conv.sign).reshape(3, 2, 3, 3)
        xi = torch.randn(1, 2, 6, 6)
        assert torch.allclose(conv(xi), torch.nn.functional.conv2d(xi, w, conv.bias, padding=1), atol=1e-6)


def test_gradient_is_summed_per_bucket():
    idx, sign = H.hash_index(out_features=4, in_features=6, buckets=5, seed=0)
    b = torch.randn(5, requires_grad=True)
    g = torch.randn(4, 6)
    (H.virtual_weight(b, idx=idx, sign=sign) * g).sum().backward()
    expect = torch.zeros(5)
    for i in range(4):
        for j in range(6):
            expect[idx[i, j]] += sign[i, j] * g[i, j]
    assert torch.allclose(b.grad, expect, atol=1e-6)


def test_buckets_from_weight_inverts_a_hashed_matrix():
    idx, sign = H.hash_index(out_features=20, in_features=30, buckets=50, seed=2)
    b = torch.randn(50)
    w = H.virtual_weight(b, idx=idx, sign=sign)
    used = torch.bincount(idx.reshape(-1), minlength=50) > 0
    back = H.buckets_from_weight(w, idx=idx, sign=sign, buckets=50)
    assert torch.allclose(back[used], b[used], atol=1e-6)


def test_method_validates_and_composes_in_a_recipe(digits, tmp_path):
    with pytest.raises(ns.RecipeError, match="ratio"):
        ns.create("hashing", ratio=0.0)
    with pytest.raises(ns.RecipeError, match="init"):
        ns.create("hashing", init="zeros")
    train, test = digits
    torch.manual_seed(0)
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    recipe = ns.Recipe.of(ns.create("hashing", ratio=0.125, targets=["fc1.weight"]),
                          ns.create("frequency", sparsity=0.7, bits=4, targets=["fc2.weight"]),
                          finetune=ns.TrainConfig(epochs=1))
    ns.compress_(model, recipe, data=train, progress=False)
    assert isinstance(model.fc1, HashedLinear) and model.fc1.buckets.numel() == 2400
    path = tmp_path / "m.nshr"
    ns.save(model, path)
    x = torch.stack([test[i][0] for i in range(16)])
    with torch.no_grad():
        assert torch.equal(model(x), ns.load(path)(x))
