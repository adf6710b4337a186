"""Attention heads of torch's nn.MultiheadAttention / nn.TransformerEncoder(Decoder)Layer:
PrunedMultiheadAttention computes what nn.MultiheadAttention computes; removing heads
equals dropping their out_proj columns; zeroed heads and FFN neurons leave outputs
identical; importance-ranked head pruning; save -> load bit-exact; ONNX verified."""
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

import netshrink as ns
from tests.structure.test_shrink_export import assert_saved_and_exported
from netshrink.cli import main
from netshrink.core.context import PrepareContext
from netshrink.runtime.attention import PrunedMultiheadAttention
from netshrink.runtime.onnx_export import export_onnx
from netshrink.structure import analyze, shrink
from netshrink.structure.importance import scores

CONFIGS = list(itertools.product([False, True], [True, False], [False, True], [False, True], [None, 5]))


def _mha(batch_first, bias, bias_kv, zero_attn, kdim, E=8, heads=4):
    torch.manual_seed(0)
    m = nn.MultiheadAttention(E, heads, bias=bias, add_bias_kv=bias_kv, add_zero_attn=zero_attn, kdim=kdim,
                              vdim=kdim, batch_first=batch_first)
    if bias:
        with torch.no_grad():
            m.in_proj_bias.normal_()
            m.out_proj.bias.normal_()
    return m


def _calls(batch_first, kdim, E=8, heads=4, N=3, L=4, S=6):
    g = torch.Generator().manual_seed(1)
    q = torch.randn((N, L, E) if batch_first else (L, N, E), generator=g)
    k = torch.randn((N, S, kdim or E) if batch_first else (S, N, kdim or E), generator=g)
    v = torch.randn(k.shape, generator=g)
    kpm = torch.zeros(N, S, dtype=torch.bool)
    kpm[0, -2:] = True
    causal = torch.triu(torch.ones(L, S, dtype=torch.bool), 1)
    per_head = torch.randn(N * heads, L, S, generator=g)
    calls = [((q, k, v), {}), ((q, k, k), {"key_padding_mask": kpm}),
             ((q, k, v), {"attn_mask": causal, "need_weights": False}),
             ((q, k, v), {"attn_mask": per_head, "key_padding_mask": kpm.float() * -1e4,
                          "average_attn_weights": False}),
             ((q[0], k[0], v[0]), {}),  # unbatched
             ((q, k, v), {"attn_mask": causal.float() * -1e9, "is_causal": True, "need_weights": False})]
    if kdim is None:
        calls.append(((q, q, q), {"need_weights": False}))  # self-attention: one packed GEMM
    return calls


@pytest.mark.parametrize("batch_first, bias, bias_kv, zero_attn, kdim", CONFIGS)
def test_pruned_attention_computes_what_torch_computes(batch_first, bias, bias_kv, zero_attn, kdim):
    m = _mha(batch_first, bias, bias_kv, zero_attn, kdim)
    p = PrunedMultiheadAttention.from_mha(m)
    for args, kw in _calls(batch_first, kdim):
        a, b = m(*args, **kw), p(*args, **kw)  # training mode, dropout 0: torch's reference path
        assert torch.equal(a[0], b[0]), kw
        assert (a[1] is None) == (b[1] is None)
        if a[1] is not None:
            assert torch.equal(a[1], b[1])
    m.eval(), p.eval()
    with torch.no_grad():  # eval: torch may take its fused kernel, the same maths
        for args, kw in _calls(batch_first, kdim)[:3]:
            torch.testing.assert_close(p(*args, **kw)[0], m(*args, **kw)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_first, bias, bias_kv, zero_attn, kdim", CONFIGS[::3])
def test_removing_heads_equals_dropping_their_output_columns(batch_first, bias, bias_kv, zero_attn, kdim):
    m = _mha(batch_first, bias, bias_kv, zero_attn, kdim)
    p = PrunedMultiheadAttention.from_mha(m)
    gone = [0, 2]
    p.remove_heads(gone)
    assert (p.num_heads, p.head_ids, p.out_proj.in_features, p.embed_dim) == (2, [1, 3], 4, 8)
    with torch.no_grad():  # the reference: every head computed, the removed ones' columns of out_proj zeroed
        for h in gone:
            m.out_proj.weight[:, h * 2:(h + 1) * 2] = 0
    for args, kw in _calls(batch_first, kdim):
        want, got = m(*args, **{**kw, "need_weights": False}), p(*args, **{**kw, "need_weights": False})
        torch.testing.assert_close(got[0], want[0], rtol=1e-5, atol=1e-6)  # per-head 3-D masks: the kept rows
    # per-head weights are the kept heads' weights
    args, kw = _calls(batch_first, kdim)[3]
    torch.testing.assert_close(p(*args, **kw)[1], m(*args, **kw)[1][:, [1, 3]], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError):
        p.remove_heads([0, 1])  # never every head


class _Encoder(nn.Module):
    """emb -> TransformerEncoder (2 layers) -> head; optional key padding mask."""

    def __init__(self, batch_first=True, norm_first=False, heads=4):
        super().__init__()
        self.batch_first = batch_first
        self.emb = nn.Linear(6, 16)
        layer = nn.TransformerEncoderLayer(16, heads, 24, dropout=0.0, batch_first=batch_first, norm_first=norm_first)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=batch_first and not norm_first)
        self.out = nn.Linear(16, 3)

    def forward(self, x, pad=None):
        h = self.emb(x if self.batch_first else x.transpose(0, 1))
        h = self.enc(h, src_key_padding_mask=pad)
        return self.out(h[:, 0] if self.batch_first else h[0])


class _Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Linear(6, 16)
        self.dec = nn.TransformerDecoderLayer(16, 4, 20, dropout=0.0, batch_first=True)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        h = self.emb(x)
        causal = nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        return self.out(self.dec(h, h.flip(1), tgt_mask=causal, tgt_is_causal=True)[:, -1])


def _zero_every_other(model, graph):
    """Zero the producer rows of every other unit of every group; return how many."""
    n = 0
    with torch.no_grad():
        for g in graph.groups:
            for i in range(0, len(g) - 1, 2):
                for (mod, p, d, pos), role in g.components[i].slots:
                    if role == "out":
                        getattr(model.get_submodule(mod), p).select(d, pos).zero_()
                n += 1
    return n


@pytest.mark.parametrize("make, with_mask", [
    (lambda: _Encoder(batch_first=True), False), (lambda: _Encoder(batch_first=True), True),
    (lambda: _Encoder(batch_first=False), True), (lambda: _Encoder(norm_first=True), False),
    (_Decoder, False)])
def test_zeroed_heads_and_ffn_neurons_removed_leave_outputs_identical(make, with_mask):
    torch.manual_seed(0)
    model = make().eval()
    x = torch.randn(3, 5, 6)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[1, -2:] = True  # torch's nested-tensor path runs for this one (batch_first, eval, no grad)
    example = (x, pad) if with_mask else x
    graph = analyze(model, example)
    kinds = sorted({g.kind for g in graph.groups})
    assert kinds == ["ffn", "heads"], [g.name for g in graph.groups]  # the residual stream is pinned
    zeroed = _zero_every_other(model, graph)
    args = example if isinstance(example, tuple) else (example,)
    with torch.no_grad():
        before = model(*args)
    info = shrink(model, example)
    assert sum(info["removed"].values()) == zeroed
    attn = [m for m in model.modules() if isinstance(m, PrunedMultiheadAttention)]
    assert attn and all(a.num_heads == 2 and a.out_proj.in_features == 8 for a in attn)
    with torch.no_grad():
        after = model(*args)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


class _Standalone(nn.Module):
    def __init__(self, use_weights: bool):
        super().__init__()
        self.use_weights = use_weights
        self.emb = nn.Linear(6, 16)
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        h = self.emb(x)
        a, w = self.attn(h, h, h)
        y = self.out(a.mean(1))
        return y + w.mean((1, 2))[:, None] if self.use_weights else y


def test_standalone_attention_heads_only_when_its_weights_are_unused():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 6)
    m = _Standalone(use_weights=False).eval()
    g = analyze(m, x)
    assert "attn.heads" in [grp.name for grp in g.groups]
    _zero_every_other(m, analyze(m, x))
    with torch.no_grad():
        before = m(x)
    shrink(m, x, remove={"attn": torch.tensor([True, False, True, False])})  # by producer masks, as other methods
    assert m.attn.num_heads == 2 and m.attn.head_ids == [1, 3]
    torch.testing.assert_close(m(x), before, rtol=0, atol=1e-5)
    # the averaged weights are read: removing a head would change them, so no heads group
    g = analyze(_Standalone(use_weights=True).eval(), x)
    assert "attn.heads" not in [grp.name for grp in g.groups]


def _data(n=16, T=6, F=5):
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, T, F, generator=g), torch.randint(0, 3, (n,), generator=g))


def test_importance_ranked_head_pruning_keeps_the_strongest_heads():
    torch.manual_seed(0)
    m = ns.zoo.models.create("transformer_small", input_size=5, d_model=16, num_heads=4, dim_feedforward=16,
                             num_classes=3).eval()
    x = _data().tensors[0][:2]
    g = analyze(m, x)
    attn0 = m.encoder.layers[0].self_attn
    d, E = attn0.head_dim, attn0.embed_dim
    w = attn0.in_proj_weight.detach().view(3, 4, d, E)  # (q/k/v, head, row, col)
    by_hand = w.abs().sum((0, 2, 3))
    torch.testing.assert_close(scores(m, g, "l1")["encoder.layers.0.self_attn.heads"], by_hand, rtol=1e-5, atol=1e-6)
    # activation: mean |value projection| of each head on the calibration data
    data = _data()
    act = scores(m, g, "activation", data=data, batches=1)["encoder.layers.0.self_attn.heads"]
    with torch.no_grad():
        xs = data.tensors[0][torch.randperm(16, generator=torch.Generator().manual_seed(0))]
        h = m.embed(xs) + m.pos[:, :6]
        v = F.linear(h, attn0.in_proj_weight[2 * E:], attn0.in_proj_bias[2 * E:]).abs().mean((0, 1))
    torch.testing.assert_close(act, v.view(4, d).sum(1), rtol=1e-5, atol=1e-6)
    keep = sorted(torch.argsort(by_hand, descending=True)[:2].tolist())
    method = ns.create("channel_prune", sparsity=0.5, scope="layer", importance="l1", kinds=["heads"])
    method.prepare(m, PrepareContext(data=data))
    assert m.encoder.layers[0].self_attn.head_ids == keep
    assert all(layer.self_attn.num_heads == 2 and layer.linear1.out_features == 16 for layer in m.encoder.layers)
    assert method.removed_ == {"encoder.layers.0.self_attn.heads": 2, "encoder.layers.1.self_attn.heads": 2}
    for crit in ("taylor", "l2"):  # a second round on the pruned model
        s = scores(m, analyze(m, x), crit, data=data, batches=1)
        assert s["encoder.layers.1.self_attn.heads"].shape == (2,)


def test_transformer_small_shrunk_saves_loads_bit_exact_and_exports(tmp_path, capsys):
    torch.manual_seed(0)
    kw = {"d_model": 32, "num_heads": 4, "dim_feedforward": 48}
    m = ns.zoo.models.create("transformer_small", **kw).eval()
    x = torch.rand(3, 28, 28)
    method = ns.create("channel_prune", sparsity=0.5, scope="layer", importance="l2")
    method.prepare(m, PrepareContext(data=TensorDataset(x, torch.zeros(3, dtype=torch.long))))
    assert all(layer.self_attn.num_heads == 2 and layer.linear1.out_features == 24 for layer in m.encoder.layers)
    fresh = ns.zoo.models.create("transformer_small", **kw).eval()
    assert sum(p.numel() for p in m.parameters()) < sum(p.numel() for p in fresh.parameters())
    # the unpruned model too (torch's fused encoder-layer kernel, which ONNX lacks, is off while exporting)
    assert export_onnx(fresh, x, tmp_path / "fresh.onnx").max_abs_diff < 1e-4
    loaded = assert_saved_and_exported(m, x, tmp_path).eval()
    assert isinstance(loaded.encoder.layers[1].self_attn, PrunedMultiheadAttention)
    assert loaded.encoder.layers[1].self_attn.head_ids == m.encoder.layers[1].self_attn.head_ids
    assert main(["export", str(tmp_path / "m.nshr"), "--onnx", "--out", str(tmp_path / "c.onnx")]) == 0
    assert "ONNX Runtime matches PyTorch" in capsys.readouterr().out
