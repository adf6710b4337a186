"""Int8Linear against a reference: fbgemm's dynamic int8 linear equals the fp32 matmul of
the dequantized weight and the (7-bit, per-tensor affine) dequantized input; weights whose
codes fit [-64, 64] run with 8-bit activations, which cannot saturate fbgemm's int16 sums."""
import torch
from torch import nn

import netshrink as ns
from netshrink.runtime.int8_linear import Int8Linear, reduce_range, to_int8


def _emulate(x, q: Int8Linear, levels: int = 127):
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    s = (hi - lo) / levels                                  # reduce_range: 0..127, else 0..255
    z = round(-lo / s)
    xq = (torch.clamp(torch.round(x / s) + z, 0, levels) - z) * s
    return nn.functional.linear(xq, q.dequantized_weight(), q.bias)


def test_codes_within_64_run_with_8_bit_activations_and_half_the_error():
    assert not reduce_range(torch.tensor([[64, -64, 3]], dtype=torch.int8))
    assert reduce_range(torch.tensor([[65, 0]], dtype=torch.int8))
    torch.manual_seed(0)
    x = torch.randn(256, 512)
    x[:, :4] *= 20                                        # outlier columns, as in GELU outputs
    for qmax, reduced in [(63, False), (64, False), (127, True)]:
        lin = nn.Linear(512, 96)
        q = Int8Linear.from_linear(lin)
        with torch.no_grad():                             # codes at the range's edges: worst case
            q.qweight.copy_(torch.randint(-qmax, qmax + 1, q.qweight.shape, dtype=torch.int8))
            q.qweight[:, :8] = qmax
        q.ns_after_load()
        assert q._reduce is reduced
        y, exact = q(x), nn.functional.linear(x, q.dequantized_weight(), q.bias)
        err = float((y - exact).norm() / exact.norm())
        ref = _emulate(x, q, 127 if reduced else 255)
        assert torch.allclose(y, ref, atol=1e-2 * float(ref.abs().max())), (qmax, float((y - ref).abs().max()))
        if not reduced:   # 8-bit activations: about half the error of the 7-bit grid on the same layer
            seven = torch.ops.quantized.linear_dynamic(x, q._packed, True)
            assert err < 0.6 * float((seven - exact).norm() / exact.norm())


def test_int8_linear_matches_emulated_int8_arithmetic():
    torch.manual_seed(0)
    lin = nn.Linear(96, 40)
    q = Int8Linear.from_linear(lin)
    x = torch.randn(64, 96)
    y = q(x)
    assert q.qweight.dtype == torch.int8 and int(q.qweight.abs().max()) == 127
    # Per-channel symmetric codes reproduce the weight to half a step.
    assert bool(((q.dequantized_weight() - lin.weight).abs() <= q.scale[:, None] / 2 + 1e-7).all())
    ref = _emulate(x, q)
    assert torch.allclose(y, ref, atol=2e-3 * float(ref.abs().max())), float((y - ref).abs().max())
    with torch.no_grad():
        assert float((y - lin(x)).abs().max()) < 0.05 * float(lin(x).abs().max())


def test_int8_model_saves_and_loads_bit_identically(tmp_path):
    torch.manual_seed(1)
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    to_int8(model)
    assert sum(isinstance(m, Int8Linear) for m in model.modules()) == 3
    ns.save(model, tmp_path / "q.nshr")
    back = ns.load(tmp_path / "q.nshr")
    x = torch.randn(8, 64)
    assert isinstance(back.fc2, Int8Linear)
    assert torch.equal(back(x), model(x))


def test_qat_activation_emulation_matches_int8_kernel():
    """qat(activations=True) fake-quantizes inputs exactly as the int8 kernel does, so the
    trained float model and its Int8Linear conversion agree closely."""
    from netshrink.functional.quantize import fake_quantize_activation

    torch.manual_seed(2)
    lin = nn.Linear(32, 16)
    q = Int8Linear.from_linear(lin)
    x = torch.randn(64, 32)
    emulated = nn.functional.linear(fake_quantize_activation(x), q.dequantized_weight(), q.bias)
    assert torch.allclose(q(x), emulated, atol=1e-3 * float(emulated.abs().max()))
    assert torch.allclose(emulated, _emulate(x, q), atol=1e-6)


def test_int8_dynamic_by_size_runs_small_calls_in_fp32_and_large_ones_in_int8():
    import torch.nn.functional as F

    from netshrink.runtime.int8_dynamic import FBGEMM_MIN_MACS, Int8DynamicLinear

    torch.manual_seed(0)
    lin = torch.nn.Linear(256, 512)
    small = torch.randn(3, 256)
    large = torch.randn(FBGEMM_MIN_MACS // (256 * 512) + 1, 256)
    by_size = Int8DynamicLinear.from_linear(lin, kernel="by_size")
    fbgemm = Int8DynamicLinear.from_linear(lin, kernel="fbgemm")
    deq = by_size.qweight.float() * by_size.scale[:, None]
    with torch.no_grad():
        assert torch.equal(by_size(small), F.linear(small, deq, lin.bias))        # fp32 on the int8 weight
        assert not torch.equal(fbgemm(small), F.linear(small, deq, lin.bias))     # int8 activations
        assert torch.equal(by_size(large), fbgemm(large))


def test_int8_dynamic_token_scale_follows_each_tokens_range():
    # Tokens of very different magnitudes (as BERT's [SEP] / punctuation rows): one grid
    # for the whole tensor ("tensor") drowns the small rows; per-token scaling does not.
    from netshrink.runtime.int8_dynamic import Int8DynamicLinear

    torch.manual_seed(0)
    lin = torch.nn.Linear(128, 64)
    x = torch.randn(40, 128) * torch.logspace(-2, 1, 40)[:, None]          # row scales 0.01 .. 10
    deq = Int8DynamicLinear.from_linear(lin, kernel="fbgemm")
    ref = torch.nn.functional.linear(x, deq.qweight.float() * deq.scale[:, None], lin.bias)
    err = {}
    with torch.no_grad():
        for act in ("tensor", "token_scale", "token"):
            q = Int8DynamicLinear.from_linear(lin, act=act, kernel="fbgemm")
            err[act] = float(((q(x) - ref) / ref.abs().amax(1, keepdim=True)).abs().max())   # worst row, relative
    assert err["token_scale"] < 0.1 * err["tensor"] and err["token"] < 0.1 * err["tensor"], err
    assert err["token_scale"] < 0.05, err


def test_int8_dynamic_smoothed_small_calls_fold_the_input_scale_into_the_weight():
    from netshrink.runtime.int8_dynamic import Int8DynamicLinear

    torch.manual_seed(0)
    lin, s = torch.nn.Linear(64, 32), torch.rand(64) + 0.5
    q = Int8DynamicLinear.from_weight(lin.weight * s, lin.bias, input_scale=1 / s, kernel="by_size")   # SmoothQuant's W diag(s), x / s
    x = torch.randn(4, 64)
    deq = q.qweight.float() * q.scale[:, None]
    with torch.no_grad():
        torch.testing.assert_close(q(x), torch.nn.functional.linear(x / s, deq, lin.bias), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(q(x), lin(x), rtol=0, atol=0.05)
