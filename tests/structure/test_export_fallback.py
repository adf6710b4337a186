"""Where torch.fx cannot trace a model, or its graph takes another path than the model,
the analysis runs on the torch.export (ATen) graph: the same groups as on an fx-traceable
twin, zeroed units removed leave outputs identical; what neither can handle is refused
with one message naming the module and the op (or both tracers' reasons)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netshrink as ns
from netshrink.structure import analyze, shrink
from tests.structure.test_graph import _zero_producers


class _Net(nn.Module):
    """conv -> BN -> conv -> BN -> tokens -> attention (+ residual) -> 2-layer LSTM -> fc.
    fx_breaker: a line torch.fx cannot trace (torch.finfo of a proxy's dtype)."""

    def __init__(self, fx_breaker: bool):
        super().__init__()
        self.fx_breaker = fx_breaker
        self.c1, self.bn1 = nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)
        self.c2, self.bn2 = nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6)
        self.attn = nn.MultiheadAttention(6, 2, batch_first=True)
        self.rnn = nn.LSTM(6, 5, num_layers=2, batch_first=True)
        self.fc = nn.Linear(5, 3)
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        h = F.relu(self.bn1(self.c1(x)))
        if self.fx_breaker:
            h = h.clamp(min=torch.finfo(h.dtype).min)
        h = F.relu(self.bn2(self.c2(h)))
        h = h.flatten(2).transpose(1, 2)
        a, _ = self.attn(h, h, h)
        o, _ = self.rnn(h + a)
        return self.fc(o[:, -1])


def _shrinks_exactly(model, x, graph):
    zeroed = _zero_producers(model, graph, every=2)
    with torch.no_grad():
        before = model(x)
    info = shrink(model, x)
    assert sum(info["removed"].values()) == zeroed
    with torch.no_grad():
        torch.testing.assert_close(model(x), before, rtol=0, atol=1e-5)
    return info


def _groups(graph):
    return {g.name: (g.kind, sorted(s for c in g.components for s in c.slots)) for g in graph.groups}


def test_export_graph_gives_the_groups_fx_gives_and_shrinks_exactly():
    torch.manual_seed(0)
    x = torch.randn(2, 1, 6, 6)
    twin, net = _Net(fx_breaker=False).eval(), _Net(fx_breaker=True).eval()
    net.load_state_dict(twin.state_dict())
    by_fx, by_export = analyze(twin, x), analyze(net, x)
    assert by_fx.untraced_reason == ""
    assert by_export.traced and by_export.untraced_reason.startswith("traced with torch.export")
    assert "finfo" in by_export.untraced_reason
    # conv1 (with its BN), the LSTM's hidden units, the attention's heads; conv2 feeds the pinned attention
    assert sorted(_groups(by_export)) == ["attn.heads", "c1", "rnn"]
    assert _groups(by_export) == _groups(by_fx)
    assert by_export.producer_dims == by_fx.producer_dims
    info = _shrinks_exactly(net, x, by_export)
    assert info["removed"] == {"c1": 2, "rnn": 2, "attn.heads": 1}
    assert (net.c1.out_channels, net.bn1.num_features, net.c2.in_channels, net.rnn.hidden_size) == (2, 2, 2, 3)
    analyze(net, x)  # the shrunk model (PrunedMultiheadAttention inside) is analysed again


class _Rows(nn.Module):  # iterating over a tensor: fx cannot
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        return torch.stack([self.fc2(F.relu(self.fc1(r))) for r in x])


class _Branch(nn.Module):  # isinstance() of an fx proxy is False: fx would trace the other branch
    def __init__(self):
        super().__init__()
        self.fc1, self.skip, self.fc2 = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.fc1(x)
        if isinstance(h, torch.Tensor):
            h = h + self.skip(x)
        return self.fc2(F.relu(h))


def test_fx_failures_and_divergent_fx_graphs_fall_back_to_export():
    torch.manual_seed(0)
    m, x = _Rows().eval(), torch.randn(3, 2, 4)
    g = analyze(m, x)
    assert "cannot be iterated" in g.untraced_reason and [grp.name for grp in g.groups] == ["fc1"]
    _shrinks_exactly(m, x, g)
    m, x = _Branch().eval(), torch.randn(2, 4)
    g = analyze(m, x)
    assert "other outputs than the model" in g.untraced_reason
    assert [grp.name for grp in g.groups] == ["fc1+skip"]  # the residual fx's graph had missed
    _shrinks_exactly(m, x, g)


class _Weights(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.attn, self.out = nn.Linear(6, 8), nn.MultiheadAttention(8, 4, batch_first=True), nn.Linear(8, 2)

    def forward(self, x):
        h = self.emb(x).clamp(min=torch.finfo(x.dtype).min)
        a, w = self.attn(h, h, h)
        return self.out(a[:, 0]) + w[:, 0, :2]  # reads the head-averaged weights


def test_exported_attention_whose_weights_are_read_keeps_its_heads():
    g = analyze(_Weights().eval(), torch.randn(2, 5, 6))
    assert g.untraced_reason.startswith("traced with torch.export")
    assert "attn.heads" not in [grp.name for grp in g.groups]


class _Running(nn.Module):
    def forward(self, h):
        return torch.cumsum(h.clamp(min=torch.finfo(h.dtype).min), dim=1)


class _Cumsum(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.inner = nn.Sequential(nn.Linear(4, 4), _Running())

    def forward(self, x):
        return self.inner(self.fc(x))


class _Flatten(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 4, 3), nn.Linear(64, 2)

    def forward(self, x):
        h = self.conv(x).clamp(min=torch.finfo(x.dtype).min)
        return self.fc(h.view(x.shape[0], 64))  # export fixes sizes: 64 may or may not follow the channels


class _Neither(nn.Module):
    def __init__(self, layer: bool):
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.layer = nn.TransformerEncoderLayer(8, 2, 12, batch_first=True) if layer else None

    def forward(self, x):
        h = self.fc(x).clamp(min=torch.finfo(x.dtype).min)
        if h.sum() > 0:  # data-dependent: torch.export cannot
            h = h * 2
        return self.layer(h) if self.layer is not None else h


def test_what_neither_tracer_handles_is_refused_loudly():
    with pytest.raises(ns.NetshrinkError, match=r"^structure: cannot analyse op 'cumsum' \(node \w+\) in module 'inner.1': no dependency rule"):
        analyze(_Cumsum().eval(), torch.randn(2, 4))
    with pytest.raises(ns.NetshrinkError, match="hard-coded size 64"):
        analyze(_Flatten().eval(), torch.randn(2, 1, 6, 6))
    with pytest.raises(ns.NetshrinkError, match=r"torch\.fx: .*finfo.*torch\.export: .*data-dependent"):
        analyze(_Neither(layer=False).eval(), torch.randn(2, 3, 4))
    g = analyze(_Neither(layer=True).eval(), torch.randn(2, 3, 4))  # only the layer's closed groups
    assert not g.traced and sorted(grp.kind for grp in g.groups) == ["ffn", "heads"]
