"""smoothquant's per-layer choices from calibration: `search` (the input scaling with the
least output error, "none" among the candidates) and act = "auto" (per-tensor int8
activations where the model's output stays within act_tolerance of per-token scales
everywhere); the choice is in each module's config and in the method's report."""
import torch
from torch import nn

import netshrink as ns
from netshrink.methods.calibrated.kernels import choose_kernel
from netshrink.runtime.int8_dynamic import Int8DynamicLinear

torch.set_num_threads(1)


class Boost(nn.Module):
    """Every 8th token x60: outlier tokens, which one per-tensor grid cannot serve."""

    def forward(self, x):
        w = torch.ones(x.shape[1], 1)
        w[::8] = 60.0
        return x * w


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.GELU(), Boost(), nn.Linear(32, 16),
                         nn.LayerNorm(16, elementwise_affine=False)).eval()


def _data(n=4):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(8, 24, 16, generator=g) for _ in range(n)]


def _recipe(**kw):
    step = {"method": "smoothquant", "targets": {"include": ["type:Linear"]}, **kw}
    return ns.Recipe.from_dict({"finetune": {"epochs": 0}, "step": [step]})


def test_act_auto_is_per_tensor_where_harmless_and_per_token_after_outlier_tokens(tmp_path):
    model, data = _model(), _data()
    ns.compress_(model, _recipe(act="auto", search=True, act_tolerance=3.0, check_samples=16,
                                        kernel="fbgemm"), data=data, progress=False)
    first, second = model[0], model[3]
    assert isinstance(first, Int8DynamicLinear) and isinstance(second, Int8DynamicLinear)
    assert first.act == "tensor" and first.kernel == "fbgemm"
    assert second.act == "token_scale"
    # per-tensor on the second layer would have been far worse: the reason it was refused
    alt = Int8DynamicLinear.from_codes(second.qweight, second.scale, second.bias, act="tensor",
                                       input_scale=second.input_scale, kernel="fbgemm")
    second.set_kernel("fbgemm")
    ref = _model()
    with torch.no_grad():
        x = Boost()(ref[1](ref[0](data[0])))
        err = lambda m: float(((ref[4](m(x)) - ref[4](ref[3](x))) ** 2).mean())
        assert err(alt) > 3 * err(second)
    p = tmp_path / "m.nshr"
    ns.save(model, p)
    back = ns.load(p, base=_model())
    assert (back[0].act, back[3].act) == ("tensor", "token_scale")
    with torch.no_grad():
        assert torch.equal(model(data[0]), back(data[0]))


def test_search_reports_the_chosen_scaling_and_can_choose_none():
    model, data = _model(), _data()
    recipe = _recipe(act="token_scale", search=True)
    rep = ns.run_recipe(model, recipe, data, progress=False).method("smoothquant").report_
    assert set(rep) == {"0", "3"}
    for name, r in rep.items():
        m = model.get_submodule(name)
        assert m.act == r["act"] == "token_scale"
        assert m.smooth == (r["alpha"] is not None)          # "none": no input scale at all
        assert r["error"] >= 0


def test_kernel_rule_gives_per_tensor_layers_fbgemm_at_every_size():
    lin = nn.Linear(384, 384)
    t = Int8DynamicLinear.from_linear(lin, act="tensor")
    k = Int8DynamicLinear.from_linear(lin, act="token_scale")
    assert choose_kernel(t, 30)["kernel"] == "fbgemm"
    assert choose_kernel(k, 30)["kernel"] == "by_size"
    tiny = Int8DynamicLinear.from_linear(nn.Linear(4, 4), act="tensor")
    assert choose_kernel(tiny, 2)["kernel"] == "fp32"                  # below MIN_MACS at batch 64


def test_int8_dynamic_leaves_its_input_alone_and_3d_equals_2d():
    """token_scale divides its own smoothed copy in place, never the caller's tensor; the
    per-tensor call without scaling takes any leading shape as the 2-D one does."""
    torch.manual_seed(0)
    lin = nn.Linear(32, 16)
    x = torch.randn(3, 5, 32) * torch.linspace(0.1, 10, 5)[None, :, None]
    for act, smooth in (("token_scale", True), ("token_scale", False), ("tensor", False), ("tensor", True)):
        c = torch.rand(32) + 0.5 if smooth else torch.ones(32)
        q = Int8DynamicLinear.from_linear(lin, act=act, kernel="fbgemm", input_scale=c if smooth else None)
        x0 = x.clone()
        with torch.no_grad():
            y = q(x)
            y2 = q(x.reshape(15, 32)).reshape(3, 5, 16)
            ref = lin(x * c)                                       # the module computes W (c * x) + b
        assert torch.equal(x, x0)
        assert torch.allclose(y, y2, atol=1e-5)
        assert float((y - ref).abs().max()) < 0.05 * float(ref.abs().max())


def test_per_layer_act_by_pattern_and_a_bad_value_is_refused():
    import pytest
    from netshrink.errors import NetshrinkError

    model, data = _model(), _data()
    rep = ns.run_recipe(model, _recipe(act="tensor", search=True, kernel="fbgemm", per_layer={"3": "token_scale"}),
                        data, progress=False).method("smoothquant").report_
    assert (model[0].act, model[3].act) == ("tensor", "token_scale")
    assert (rep["0"]["act"], rep["3"]["act"]) == ("tensor", "token_scale")
    with pytest.raises(NetshrinkError, match="per_layer"):
        ns.create("smoothquant", per_layer={"3": "int4"})
