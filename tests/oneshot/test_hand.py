"""The one-shot maths against hand-computed cases on a 2x3 layer (issue 15)."""
import torch

from netshrink.functional.awq import awq_scale, smooth_scale
from netshrink.functional.gptq import gptq_quantize, rtn_quantize
from netshrink.functional.sparsegpt import sparsegpt_prune
from netshrink.functional.wanda import wanda_mask

W = torch.tensor([[0.9, -0.4, 0.3], [0.2, 0.7, -0.6]])
H = torch.tensor([[2.0, 0.8, 0.3], [0.8, 1.5, -0.4], [0.3, -0.4, 1.0]])


def _obs(w, h, decide):
    """The OBS recursion written out with explicit inverses (no Cholesky): fix column q to
    decide(q, w_q), update the later columns by -(w_q - v)/[H_F^-1]_qq [H_F^-1]_{q,:}, then
    drop q from F (the inverse of the remaining columns' Hessian)."""
    w, out = w.clone().double(), torch.zeros_like(w, dtype=torch.float64)
    for q in range(w.shape[1]):
        hinv = torch.linalg.inv(h[q:, q:].double())
        v = decide(q, w[:, q], hinv[0, 0])
        out[:, q] = v
        w[:, q:] -= ((w[:, q] - v) / hinv[0, 0])[:, None] * hinv[0][None, :]
    return out.float()


def test_gptq_matches_the_obs_recursion_on_2x3():
    # symmetric 2-bit: grid {-1, 0, 1} * s with s = max|w| of the original row (per channel)
    s = W.abs().amax(1)
    res = gptq_quantize(W, H, bits=2, symmetric=True, damp=0.0, block_size=2)   # a block boundary inside
    ref = _obs(W, H, lambda q, col, d: torch.clamp(torch.round(col / s.double()), -1, 1) * s.double())
    assert torch.allclose(res.weight, ref, atol=1e-6)
    # by hand: row 0 col 0 = 0.9 -> 0.9 (code 1); the errors then move the rest
    assert abs(float(res.weight[0, 0]) - 0.9) < 1e-7
    # it differs from round-to-nearest (which would give [0.9, -0.0, 0.0] on row 0) ...
    assert not torch.equal(res.weight, rtn_quantize(W, bits=2, symmetric=True))
    # ... and lowers the layer error tr((W - Q) H (W - Q)^T)
    err = lambda q: float(torch.einsum("ij,jk,ik->", W - q, H, W - q))  # noqa: E731
    assert err(res.weight) < err(rtn_quantize(W, bits=2, symmetric=True))


def test_gptq_with_a_diagonal_hessian_is_round_to_nearest():
    res = gptq_quantize(W, torch.eye(3) * 2, bits=3, symmetric=True, damp=0.0)
    assert torch.equal(res.weight, rtn_quantize(W, bits=3, symmetric=True))


def test_sparsegpt_matches_the_obs_recursion_on_2x3():
    # 50 % of 6 weights: the 3 smallest w^2 / [H_F^-1]_qq (F = columns q.. of the block)
    d = torch.tensor([float(torch.linalg.inv(H[q:, q:].double())[0, 0]) for q in range(3)])
    sal = W ** 2 / d[None, :] ** 2
    mask = torch.zeros_like(W, dtype=torch.bool)
    mask.view(-1)[torch.topk(sal.flatten(), 3, largest=False).indices] = True
    ref = _obs(W, H, lambda q, col, dd: torch.where(mask[:, q], torch.zeros_like(col), col))
    w, _ = sparsegpt_prune(W, H, sparsity=0.5, damp=0.0)
    assert torch.allclose(w, ref, atol=1e-6)
    assert int((w == 0).sum()) == 3


def test_wanda_by_hand():
    w = torch.tensor([[1.0, -2.0, 3.0], [4.0, 0.5, -2.0]])
    norm = torch.tensor([1.0, 1.0, 0.5])            # scores [[1, 2, 1.5], [4, 0.5, 1]]
    keep = wanda_mask(w, norm, sparsity=1 / 3)
    assert keep.tolist() == [[False, True, True], [True, False, True]]
    # magnitude alone would drop row 0's |1| too, but row 1's |0.5|: same here; with the
    # norm of input 1 shrunk, Wanda drops it in row 0 as well
    keep = wanda_mask(w, torch.tensor([1.0, 0.1, 0.5]), sparsity=1 / 3)
    assert keep.tolist() == [[True, False, True], [True, False, True]]


def test_awq_and_smoothquant_scales_by_hand():
    s = awq_scale(torch.tensor([1.0, 4.0]), 0.5)               # [1, 2] / sqrt(2)
    assert torch.allclose(s, torch.tensor([2 ** -0.5, 2 ** 0.5]))
    w = torch.tensor([[1.0, -2.0], [0.5, 1.0]])                # max |W_:j| = [1, 2]
    s = smooth_scale(torch.tensor([4.0, 1.0]), [w], alpha=0.5)  # sqrt(4)/1, 1/sqrt(2)
    assert torch.allclose(s, torch.tensor([2.0, 2 ** -0.5]))


def test_per_layer_values_reach_their_layers():
    import netshrink as ns
    from netshrink.zoo import models

    torch.manual_seed(0)
    model = models.create("mlp", in_features=16, hidden=[32], num_classes=4)
    data = [torch.randn(32, 16) for _ in range(2)]
    recipe = ns.Recipe.of(ns.create("gptq", bits=4, granularity="channel", per_layer={"hidden.0": 2}),
                          ns.create("wanda", sparsity=0.25, per_layer={"out": 0.5}),
                          finetune=ns.TrainConfig(epochs=0))
    ns.compress_(model, recipe, data=data, progress=False)
    first, last = model.hidden[0].weight, model.out.weight
    assert max(torch.unique(r).numel() for r in first) <= 4        # 2-bit asymmetric: 4 levels (wanda's zeros included)
    assert abs(float((last == 0).float().mean()) - 0.5) < 0.01
