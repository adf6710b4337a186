"""act = "static": one calibrated input range per layer and its largest channels kept
exact beside the int8 GEMM (LLM.int8()'s decomposition with channels fixed at
calibration): the kernel equals its emulation, beats one dynamic per-tensor range on
inputs with outlier channels, round-trips bit-exactly and refuses what would saturate."""
import pytest
import torch
from torch import nn

import netshrink as ns
from netshrink.errors import ArtifactError, RecipeError
from netshrink.methods.calibrated.scaling import static_range
from netshrink.runtime.int8_dynamic import Int8DynamicLinear

torch.set_num_threads(1)


def _outlier_input(rows=300, width=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, width, generator=g) * 0.5
    x[:, 3] *= 40                      # two massive channels, as BERT's residual stream has
    x[:20, 9] = 90.0
    return x


def test_static_kernel_equals_its_emulation_and_keeps_outlier_channels_exact():
    torch.manual_seed(0)
    lin, x = nn.Linear(64, 24).requires_grad_(False), _outlier_input()
    lo, hi, idx = static_range(x.amin(0).clamp(max=0), x.amax(0).clamp(min=0), None, 2)
    assert idx.tolist() == [3, 9]
    q = Int8DynamicLinear.from_weight(lin.weight, lin.bias, act="static", bits=7, outliers=2)
    q.set_static(lo, hi, idx)
    w = q.qweight.float() * q.scale[:, None]
    s = (hi - lo) / 255
    z = round(-lo / s)
    xq = (torch.clamp(torch.round(x / s) + z, 0, 255) - z) * s            # the static 8-bit grid, clipped
    xq[:, idx] += x[:, idx] - x[:, idx].clamp(-z * s, (255 - z) * s)       # the excess, exact
    ref = nn.functional.linear(xq, w, lin.bias)
    y = q(x)                               # channel 3 exceeds the range in most rows: one dense pass
    assert torch.allclose(y, ref, atol=1e-3 * float(ref.abs().max())), float((y - ref).abs().max())
    few = x.clone()
    few[:, 3] = 0.1                        # only the 20 rows of channel 9 exceed: those rows alone
    xq2 = (torch.clamp(torch.round(few / s) + z, 0, 255) - z) * s
    xq2[:, idx] += few[:, idx] - few[:, idx].clamp(-z * s, (255 - z) * s)
    ref2 = nn.functional.linear(xq2, w, lin.bias)
    assert torch.allclose(q(few), ref2, atol=1e-3 * float(ref2.abs().max()))
    exact = nn.functional.linear(x, w, lin.bias)
    tensor = Int8DynamicLinear.from_weight(lin.weight, lin.bias, act="tensor", bits=7)
    err = float((y - exact).norm() / exact.norm())
    assert err < 0.1 * float((tensor(x) - exact).norm() / exact.norm())


def test_smoothquant_static_saves_and_loads_bit_exactly_and_refuses_8_bit_weights(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 8)).eval()
    base = nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 8))
    data = [_outlier_input(seed=i) for i in range(3)]

    def recipe(**kw):
        step = {"method": "smoothquant", "act": "static", "targets": {"include": ["type:Linear"]}, **kw}
        return ns.Recipe.from_dict({"finetune": {"epochs": 0}, "step": [step]})

    with pytest.raises(RecipeError, match="bits"):
        ns.compress_(model, recipe(bits=8), data=data, progress=False)
    ns.compress_(model, recipe(bits=7, outlier_channels=2, search=True), data=data, progress=False)
    first = model[0]
    assert isinstance(first, Int8DynamicLinear) and first.act == "static" and first.outlier_index.numel() == 2
    ns.save(model, tmp_path / "m.nshr")
    back = ns.load(tmp_path / "m.nshr", base=base)
    assert torch.equal(back(data[0]), model(data[0]))
    # A file whose range does not hold 0 is refused by name, not run.
    bad = Int8DynamicLinear.from_weight(torch.randn(4, 8), None, act="static", bits=7, outliers=1)
    bad.act_range.copy_(torch.tensor([0.5, 1.0]))
    with pytest.raises(ArtifactError, match="range"):
        bad.ns_after_load()
    with pytest.raises(ValueError, match="-64, 64"):
        Int8DynamicLinear.from_weight(torch.randn(4, 8), None, act="static", bits=8)


def test_gptq_int8_static_runs_its_codes_with_the_calibrated_range_and_refuses_8_bits():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 8)).eval()
    data = [_outlier_input(seed=i) for i in range(3)]

    def recipe(**kw):
        step = {"method": "gptq", "granularity": "channel", "symmetric": True, "execute": "int8", "act": "static",
                "outlier_channels": 2, "targets": {"include": ["type:Linear"]}, **kw}
        return ns.Recipe.from_dict({"finetune": {"epochs": 0}, "step": [step]})

    with pytest.raises(RecipeError, match="bits"):
        ns.compress_(nn.Sequential(nn.Linear(64, 8)), recipe(bits=8), data=data, progress=False)
    ref = [model(x).detach() for x in data]
    ns.compress_(model, recipe(bits=6, kernel="fbgemm"), data=data, progress=False)
    first = model[0]
    assert first.act == "static" and first.kernel == "fbgemm" and int(first.qweight.abs().max()) <= 31
    # The massive channel 3 is one of the two kept exact; the output stays near the fp32 model's.
    assert 3 in first.outlier_index.tolist()
    err = sum(float((model(x) - r).norm() / r.norm()) for x, r in zip(data, ref)) / len(data)
    assert err < 0.05, err


def test_static_search_picks_the_range_with_least_error_and_smooth_false_scales_nothing():
    # A Gaussian body and one spike: the min-max range spends the 8-bit grid on the spike;
    # a shrunk range clips it but puts 230k values on a finer grid, with less output error
    # in total, and the search (every row calibrated and sampled: 1,800 < SEARCH_ROWS) must find it.
    g = torch.Generator().manual_seed(0)
    data = [torch.randn(600, 128, generator=g) for _ in range(3)]
    data[0][5, 7] = 40.0
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(128, 16)).eval()
    lin = nn.Linear(128, 16).requires_grad_(False)
    lin.load_state_dict(model[0].state_dict())
    step = {"method": "smoothquant", "act": "static", "bits": 7, "outlier_channels": 0, "search": True,
            "smooth": False, "samples": 1800, "targets": {"include": ["type:Linear"]}}
    rep = ns.run_recipe(model, ns.Recipe.from_dict({"finetune": {"epochs": 0}, "step": [step]}), data,
                        progress=False).method("smoothquant").report_["0"]
    q = model[0]
    assert q.act == "static" and not q.smooth and q.input_scale is None
    assert rep["alpha"] is None and rep["clip"] < 1.0
    x = torch.cat(data)
    lo, hi = x.amin(0).clamp(max=0), x.amax(0).clamp(min=0)
    full = Int8DynamicLinear.from_weight(lin.weight, lin.bias, act="static", bits=7, outliers=0)
    full.set_static(*static_range(lo, hi, None, 0, 1.0))
    exact = lin(x)
    assert float((q(x) - exact).norm()) < float((full(x) - exact).norm())
    assert q.act_range.tolist() == pytest.approx([rep["clip"] * float(lo.min()), rep["clip"] * float(hi.max())])


def test_asymmetric_int8_weights_run_exactly_on_fbgemm_and_gptq_uses_them(tmp_path):
    # Per-channel zero points: fbgemm's static kernel equals the emulation of (q - z) * s
    # with the activations on their static grid, the file round-trips bit-exactly, and
    # GPTQ's asymmetric 6-bit codes sit in -32 .. 31 with their zero points.
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    codes = torch.randint(-64, 64, (24, 64), generator=g)
    zero = torch.randint(-20, 20, (24,), generator=g)
    scale, bias, x = torch.rand(24) / 50 + 1e-3, torch.randn(24), _outlier_input()
    q = Int8DynamicLinear.from_codes(codes, scale, bias, act="static", outliers=2, zero_point=zero)
    lo, hi, idx = static_range(x.amin(0).clamp(max=0), x.amax(0).clamp(min=0), None, 2)
    q.set_static(lo, hi, idx)
    w = (codes - zero[:, None]).float() * scale[:, None]
    assert torch.equal(q.dequantized_weight(), w)
    s, z = (hi - lo) / 255, round(-lo / ((hi - lo) / 255))
    xq = (torch.clamp(torch.round(x / s) + z, 0, 255) - z) * s
    xq[:, idx] += x[:, idx] - x[:, idx].clamp(-z * s, (255 - z) * s)
    ref = nn.functional.linear(xq, w, bias)
    assert torch.allclose(q(x), ref, atol=1e-4 * float(ref.abs().max())), float((q(x) - ref).abs().max())
    assert q.ns_counts() == (24 * 64 + 24, int((codes != zero[:, None]).sum()) + 24)
    zps = torch.ops.quantized.linear_unpack(q._packed)[0].q_per_channel_zero_points()
    assert torch.equal(zps, zero.long())                # codes - z reach 84: fbgemm takes the zero points
    # 6-bit asymmetric rows: codes - z fit [-63, 63], so fbgemm runs them with no zero points
    c6, z6 = torch.randint(-32, 32, (24, 64), generator=g), torch.randint(-32, 32, (24,), generator=g)
    q6 = Int8DynamicLinear.from_codes(c6, scale, bias, act="static", outliers=2, zero_point=z6)
    q6.set_static(lo, hi, idx)
    assert not torch.ops.quantized.linear_unpack(q6._packed)[0].q_per_channel_zero_points().any()
    ref6 = nn.functional.linear(xq, (c6 - z6[:, None]).float() * scale[:, None], bias)
    assert torch.allclose(q6(x), ref6, atol=1e-4 * float(ref6.abs().max()))
    ns.save(nn.Sequential(q), tmp_path / "a.nshr")
    back = ns.load(tmp_path / "a.nshr", base=nn.Sequential(nn.Linear(64, 24)))[0]
    assert back.asymmetric and torch.equal(back.weight_zero, zero.to(torch.int8)) and torch.equal(back(x), q(x))

    model = nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 8)).eval()
    data = [_outlier_input(seed=i) for i in range(3)]
    step = {"method": "gptq", "granularity": "channel", "symmetric": False, "execute": "int8", "act": "static",
            "outlier_channels": 2, "bits": 6, "kernel": "fbgemm", "targets": {"include": ["type:Linear"]}}
    ref = [model(x).detach() for x in data]
    ns.compress_(model, ns.Recipe.from_dict({"finetune": {"epochs": 0}, "step": [step]}), data=data, progress=False)
    for lin in (model[0], model[2]):
        assert lin.asymmetric and -32 <= int(lin.qweight.min()) and int(lin.qweight.max()) <= 31
        assert len(set(lin.weight_zero.tolist())) > 1                  # each row its own zero point
    err = sum(float((model(x) - r).norm() / r.norm()) for x, r in zip(data, ref)) / len(data)
    assert err < 0.05, err


def test_gptq_8_bit_asymmetric_int8_codes_use_all_of_int8_with_7_bit_activations():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 8)).eval()
    data = [torch.randn(40, 64) for _ in range(3)]
    ref = model(data[0]).detach()
    step = {"method": "gptq", "bits": 8, "granularity": "channel", "symmetric": False, "execute": "int8",
            "act": "token", "kernel": "fbgemm", "targets": {"include": ["type:Linear"]}}
    ns.compress_(model, ns.Recipe.from_dict({"finetune": {"epochs": 0}, "step": [step]}), data=data, progress=False)
    q = model[0]
    assert q.asymmetric and int(q.qweight.min()) == -128 and q._reduce        # 0 .. 255 moved to -128 .. 127
    assert float((model(data[0]) - ref).norm() / ref.norm()) < 0.03
