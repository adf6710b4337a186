"""Int8 layers that read one input as one GEMM (runtime.int8_dynamic.Int8FusedLinear,
smoothquant `fuse`) and input scales folded into the producing layer (`fold`): the same
outputs as the unfused / unfolded layers, files that load bit-exactly, clear refusals."""
import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel

import netshrink as ns
from netshrink.errors import ArtifactError
from netshrink.runtime.int8_dynamic import Int8DynamicLinear, Int8FusedLinear, fuse

torch.set_num_threads(1)


def _bert():
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64)
    return BertModel(cfg).eval()


def _data():
    g = torch.Generator().manual_seed(1)
    return [{"input_ids": torch.randint(0, 100, (8, 12), generator=g),
             "attention_mask": torch.ones(8, 12, dtype=torch.long)} for _ in range(4)]


def _run(model, data, **kw):
    step = {"method": "smoothquant", "act": "tensor", "kernel": "fbgemm", "samples": 32,
            "targets": {"include": ["type:Linear"]}, **kw}
    return ns.run_recipe(model, ns.Recipe.from_dict({"finetune": {"epochs": 0}, "step": [step]}),
                         data=data, progress=False).methods[0]


def _out(model, batch):
    with torch.no_grad():
        return model(**batch).last_hidden_state


def test_fused_qkv_equals_unfused_and_loads_bit_exactly(tmp_path):
    data = _data()
    plain, fused = _bert(), _bert()
    _run(plain, data)
    sq = _run(fused, data, fuse=True)
    att = fused.encoder.layer[0].attention.self
    assert all(isinstance(m, Int8FusedLinear) for m in (att.query, att.key, att.value))
    assert [m.member for m in (att.query, att.key, att.value)] == [0, 1, 2]
    assert type(fused.encoder.layer[0].intermediate.dense) is Int8DynamicLinear      # a group of one
    assert sq.report_["encoder.layer.0.attention.self.key"]["fused"] == "encoder.layer.0.attention.self.query"
    assert torch.equal(_out(fused, data[0]), _out(plain, data[0]))                   # one GEMM, same numbers
    p = tmp_path / "m.nshr"
    ns.save(fused, p)
    back = ns.load(p)
    assert isinstance(back.encoder.layer[1].attention.self.value, Int8FusedLinear)
    assert torch.equal(_out(back, data[1]), _out(fused, data[1]))


def test_gptq_int8_static_fuse_shares_one_range_per_group_and_equals_unfused(tmp_path):
    # gptq's fuse: q / k / v get one static range (searched on their summed error) and run
    # as one GEMM with asymmetric codes; the fused model computes what the unfused one does.
    data = _data()

    def gptq(model, **kw):
        step = {"method": "gptq", "bits": 6, "granularity": "channel", "symmetric": False, "execute": "int8",
                "act": "static", "outlier_channels": 2, "kernel": "fbgemm", "samples": 32,
                "targets": {"include": ["type:Linear"]}, **kw}
        return ns.run_recipe(model, ns.Recipe.from_dict({"finetune": {"epochs": 0}, "step": [step]}),
                             data=data, progress=False).methods[0]

    plain, fused = _bert(), _bert()
    g0, g1 = gptq(plain), gptq(fused, fuse=True)
    att = fused.encoder.layer[1].attention.self
    assert all(isinstance(m, Int8FusedLinear) and m.asymmetric for m in (att.query, att.key, att.value))
    names = [f"encoder.layer.1.attention.self.{n}" for n in ("query", "key", "value")]
    assert len({g1.report_[n]["clip"] for n in names}) == 1 and g1.report_[names[2]]["fused"] == names[0]
    # the unfused layers' ranges are their own; set to the group's, they compute the same
    for blk_p, blk_f in zip(plain.encoder.layer, fused.encoder.layer):
        a_p, a_f = blk_p.attention.self, blk_f.attention.self
        for n in ("query", "key", "value"):
            getattr(a_p, n).set_static(*a_f.query.act_range.tolist(), a_f.query.outlier_index)
    assert torch.allclose(_out(fused, data[0]), _out(plain, data[0]), atol=1e-5)
    ns.save(fused, tmp_path / "g.nshr")
    assert torch.equal(_out(ns.load(tmp_path / "g.nshr"), data[1]), _out(fused, data[1]))
    with pytest.raises(ns.RecipeError, match="fuse"):
        ns.create("gptq", fuse=True)


def test_fold_moves_attention_outputs_scale_into_the_value_projection_only():
    data = _data()
    plain, folded = _bert(), _bert()
    _run(plain, data)
    sq = _run(folded, data, fold=True)
    blk = folded.encoder.layer[0]
    assert not blk.attention.output.dense.smooth                  # its 1/s is in value's output channels
    assert sq.report_["encoder.layer.0.attention.output.dense"]["folded_into"] == \
        "encoder.layer.0.attention.self.value"
    assert blk.intermediate.dense.smooth and blk.attention.self.query.smooth   # LayerNorm inputs: not linear
    assert sq.report_["encoder.layer.0.intermediate.dense"]["fold_linear_in"][1] is False
    y0, y1, ref = _out(plain, data[0]), _out(folded, data[0]), _out(_bert(), data[0])
    assert float((y1 - y0).abs().max()) < 0.01 * float((y0 - ref).abs().max())   # rounding, not a change


@pytest.mark.parametrize("act,kernel", [("tensor", "fbgemm"), ("token_scale", "fbgemm"), ("token", "fbgemm"),
                                        ("tensor", "fp32")])
def test_fuse_runtime_same_outputs_one_gemm_per_input(act, kernel):
    torch.manual_seed(0)
    s = torch.rand(16) + 0.5
    mods = [Int8DynamicLinear.from_weight(torch.randn(o, 16), torch.randn(o), input_scale=1 / s, act=act,
                                          kernel=kernel) for o in (8, 8, 4)]
    members = fuse(mods, "g")
    x = torch.randn(5, 7, 16)
    # int8 through fbgemm: equal; fp32 and "token"'s output pass are GEMMs of another width
    tol = 0 if (kernel, act) in (("fbgemm", "tensor"), ("fbgemm", "token_scale")) else 1e-5
    with torch.no_grad():
        for m, f in zip(mods, members):
            a, b = m(x), f(x)
            assert a.shape == b.shape
            torch.testing.assert_close(b, a, rtol=0, atol=tol)
        lead = members[0]
        assert (lead.calls, lead.computes) == (3, 1)
        x.mul_(2)                                   # changed in place: recomputed, not served stale
        torch.testing.assert_close(members[1](x), mods[1](x), rtol=0, atol=tol)
        with torch.inference_mode():                # no version counters: correct, each call computes
            xi = torch.randn(3, 16)
            torch.testing.assert_close(members[2](xi), mods[2](xi), rtol=0, atol=tol)


def test_fused_groups_refuse_inconsistent_members_and_missing_links():
    torch.manual_seed(0)
    a = Int8DynamicLinear.from_weight(torch.randn(8, 16), None, act="tensor")
    b = Int8DynamicLinear.from_weight(torch.randn(8, 16), None, act="token")
    with pytest.raises(ArtifactError, match="differ in input width, act"):
        fuse([a, b], "g")
    lone = Int8FusedLinear(16, 8, bias=False, act="tensor", group="g", member=1)
    with pytest.raises(ArtifactError, match="members \\[1\\], expected 0..n-1"):
        lone.ns_link(nn.Sequential(lone))
    with pytest.raises(ArtifactError, match="not linked"):
        lone(torch.randn(2, 16))


def test_bits_7_keeps_codes_where_fbgemm_takes_8_bit_activations():
    from netshrink.runtime.int8_linear import reduce_range

    data = _data()
    seven, eight = _bert(), _bert()
    _run(seven, data, bits=7)
    _run(eight, data)
    q7, q8 = seven.encoder.layer[0].intermediate.dense, eight.encoder.layer[0].intermediate.dense
    assert int(q7.qweight.abs().max()) == 63 and not reduce_range(q7.qweight)
    assert int(q8.qweight.abs().max()) == 127 and reduce_range(q8.qweight)
    with pytest.raises(ns.errors.RecipeError, match="bits"):
        ns.create("smoothquant", bits=9)


def test_static_fused_qkv_shares_one_range_and_loads_bit_exactly(tmp_path):
    data = _data()
    plain, fused = _bert(), _bert()
    kw = dict(act="static", bits=7, outlier_channels=4)
    _run(plain, data, **kw)
    _run(fused, data, fuse=True, **kw)
    att = fused.encoder.layer[0].attention.self
    assert all(isinstance(m, Int8FusedLinear) and m.act == "static" for m in (att.query, att.key, att.value))
    assert torch.equal(att.query.outlier_index, att.value.outlier_index)
    assert torch.equal(_out(fused, data[0]), _out(plain, data[0]))
    p = tmp_path / "m.nshr"
    ns.save(fused, p)
    assert torch.equal(_out(ns.load(p), data[1]), _out(fused, data[1]))


def test_gptq_fold_after_smoothquant_float_moves_the_scale_into_value(tmp_path):
    # smoothquant's scaling (float) then gptq int8: with fold, attention's output projection
    # loses its input scale (value's output channels carry it) and computes what it did
    data = _data()

    def sq_gptq(model, **kw):
        steps = [{"method": "smoothquant", "alpha": 0.5, "execute": "float", "samples": 32,
                  "targets": {"include": ["type:Linear"]}},
                 {"method": "gptq", "bits": 6, "granularity": "channel", "symmetric": False, "execute": "int8",
                  "act": "static", "outlier_channels": 2, "kernel": "fbgemm", "samples": 32, "fuse": True, **kw}]
        return ns.run_recipe(model, ns.Recipe.from_dict({"finetune": {"epochs": 0}, "step": steps}),
                             data=data, progress=False).methods[1]

    plain, folded = _bert(), _bert()
    sq_gptq(plain)
    g = sq_gptq(folded, fold=True)
    for i in range(2):
        blk = folded.encoder.layer[i]
        assert plain.encoder.layer[i].attention.output.dense.smooth and not blk.attention.output.dense.smooth
        assert g.report_[f"encoder.layer.{i}.attention.output.dense"]["folded_into"] == \
            f"encoder.layer.{i}.attention.self.value"
        assert blk.intermediate.dense.smooth and blk.output.dense.smooth     # LayerNorm / GELU inputs stay
        assert isinstance(blk.attention.self.value, Int8FusedLinear)          # folded, then fused
    y0, y1, ref = _out(plain, data[0]), _out(folded, data[0]), _out(_bert(), data[0])
    assert float((y1 - y0).abs().max()) < 0.05 * float((y0 - ref).abs().max())
    ns.save(folded, tmp_path / "f.nshr")
    assert torch.equal(_out(ns.load(tmp_path / "f.nshr"), data[1]), _out(folded, data[1]))
    with pytest.raises(ns.RecipeError, match="fold"):
        ns.create("gptq", fold=True)


def test_int8_execution_off_the_cpu_is_one_clear_error():
    # fbgemm is CPU-only: a model elsewhere is refused before any work, and an int8 layer
    # given an input elsewhere names the problem (here the "meta" device stands in for a GPU)
    model = _bert().to("meta")
    step = {"method": "gptq", "bits": 6, "granularity": "channel", "execute": "int8", "samples": 8}
    with pytest.raises(ns.RecipeError, match="CPU-only.*meta"):
        ns.run_recipe(model, ns.Recipe.from_dict({"finetune": {"epochs": 0}, "step": [step]}),
                      data=_data(), progress=False)
    q = Int8DynamicLinear.from_weight(torch.randn(4, 8), None)
    with pytest.raises(ns.NetshrinkError, match="CPU-only"):
        q(torch.randn(2, 8, device="meta"))
