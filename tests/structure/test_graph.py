"""Dependency analysis: removing channels whose output is exactly zero leaves every zoo
model's outputs unchanged; coupled dimensions (residual, concat offsets, flatten,
depthwise, RNN gates/layers/directions, heads) shrink together; unknown ops fail loudly."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netshrink as ns
from netshrink.structure import analyze, shrink
from netshrink.zoo.bert import register_bert_tiny

register_bert_tiny()

ZOO = {  # model -> (kwargs, input)
    "lenet300_100": ({"in_features": 64}, (2, 1, 8, 8)),
    "mlp": ({"in_features": 64, "hidden": [32, 16]}, (2, 1, 8, 8)),
    "lenet5": ({"input_size": 28}, (2, 1, 28, 28)),
    "resnet_small": ({"widths": [8, 16, 16], "blocks": [2, 1, 1]}, (2, 1, 16, 16)),
    "densenet_small": ({"growth": 4, "blocks": [2, 2], "init_channels": 8}, (2, 1, 16, 16)),
    "lstm": ({"input_size": 8, "hidden_size": 12}, (2, 8, 8)),
    "gru": ({"input_size": 8, "hidden_size": 12, "bidirectional": True}, (2, 8, 8)),
    "bert_tiny": ({"hidden_size": 32, "num_heads": 4, "intermediate_size": 48, "max_len": 8}, None),
}


def _zero_producers(model, graph, every=3):
    """Zero the producer side (weights, biases, BatchNorm scale and shift) of every
    `every`-th unit of every group: those units now output exactly zero."""
    n = 0
    with torch.no_grad():
        for g in graph.groups:
            for i in range(0, len(g) - 1, every):
                for (mod, p, d, pos), role in g.components[i].slots:
                    if role == "out" or (role == "norm" and p in ("weight", "bias")):
                        getattr(model.get_submodule(mod), p).select(d, pos).zero_()
                n += 1
    return n


@pytest.mark.parametrize("name", sorted(ZOO))
def test_removing_zero_units_leaves_outputs_identical(name):
    kw, shape = ZOO[name]
    torch.manual_seed(0)
    model = ns.zoo.models.create(name, **kw).eval()
    x = model.example_input(3) if shape is None else torch.randn(*shape)
    graph = analyze(model, x)
    zeroed = _zero_producers(model, graph)
    assert zeroed > 0
    params = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        before = model(x)
    info = shrink(model, x)
    assert sum(info["removed"].values()) == zeroed
    assert sum(p.numel() for p in model.parameters()) < params
    with torch.no_grad():
        after = model(x)
    # removing exact zeros changes nothing but the order of float summation
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)


def test_every_zoo_model_is_analysed_or_refused_loudly():
    for name in ns.zoo.models.names():
        if name in ZOO:
            continue
        try:
            model = ns.zoo.models.create(name).eval()
            from netshrink.cli.onnx_file import example_for
            x = example_for(model)
        except ns.NetshrinkError:
            continue  # needs arguments we do not know: not ours to judge
        try:
            graph = analyze(model, x)
        except ns.NetshrinkError as e:
            assert "structure:" in str(e)
            continue
        _zero_producers(model, graph)
        with torch.no_grad():
            before = model(x)
        shrink(model, x, graph=graph)
        with torch.no_grad():
            torch.testing.assert_close(model(x), before, rtol=0, atol=1e-5)


def test_residual_stream_is_one_group_and_concat_keeps_offsets():
    g = analyze(ns.zoo.models.create("resnet_small", widths=[8, 16, 16], blocks=[2, 1, 1]), torch.zeros(1, 1, 16, 16))
    names = [x.name for x in g.groups]
    # stem + both blocks' conv2 write the stage-0 stream: one group of 8 channels
    assert "stages.0.0.conv2+stages.0.1.conv2+stem.0" in names
    assert len(g.group("stages.0.0.conv2+stages.0.1.conv2+stem.0")) == 8
    d = ns.zoo.models.create("densenet_small", growth=4, blocks=[2], init_channels=8)
    g = analyze(d, torch.zeros(1, 1, 16, 16))
    # features.1 reads cat([stem 8, features.0.conv 4]): unit 2 of features.0.conv is its input column 8 + 2
    comp = g.group("features.0.conv").components[2]
    assert (("features.1.conv", "weight", 1, 10), "in") in comp.slots
    assert (("features.1.bn", "running_mean", 0, 10), "norm") in comp.slots


def test_flatten_into_linear_and_lstm_gates():
    g = analyze(ns.zoo.models.create("lenet5", input_size=28), torch.zeros(1, 1, 28, 28))
    comp = g.group("conv2").components[3]  # channel 3 of (50, 4, 4) -> fc1 columns 48..63
    cols = sorted(s[3] for s, r in comp.slots if s[0] == "fc1")
    assert cols == list(range(3 * 16, 4 * 16))
    lstm = ns.zoo.models.create("lstm", input_size=4, hidden_size=5, num_layers=2)
    comp = analyze(lstm, torch.zeros(1, 3, 4)).group("rnn").components[1]
    rows = sorted(s[3] for s, r in comp.slots if s[1] == "weight_ih_l1" and s[2] == 0)
    assert rows == [1, 6, 11, 16]  # gates i, f, g, o of unit 1 (H = 5)


class _DepthwiseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.pw = nn.Conv2d(1, 6, 1)
        self.dw = nn.Conv2d(6, 6, 3, padding=1, groups=6)
        self.bn = nn.BatchNorm2d(6)
        self.grouped = nn.Conv2d(6, 4, 1, groups=2)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        x = F.relu(self.bn(self.dw(F.relu(self.pw(x)))))
        return self.fc(self.grouped(x).mean((2, 3)))


def test_depthwise_follows_its_input_and_grouped_conv_is_pinned():
    g = analyze(_DepthwiseNet(), torch.zeros(1, 1, 6, 6))
    assert [x.name for x in g.groups] == []  # pw feeds a grouped conv: pinned, not silently broken
    net = _DepthwiseNet()
    net.grouped = nn.Conv2d(6, 4, 1)
    g = analyze(net, torch.zeros(1, 1, 6, 6))
    (grp,) = [x for x in g.groups if x.name == "pw"]
    assert (("dw", "weight", 0, 2), "out") in grp.components[2].slots


class _Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return torch.cumsum(self.fc(x), dim=1)


class _HardCoded(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 4 * 4, 2)

    def forward(self, x):
        return self.fc(self.conv(x).view(-1, 64))


def test_unsupported_op_names_module_and_op():
    with pytest.raises(ns.NetshrinkError, match="cumsum.*in module"):
        analyze(_Unsupported(), torch.zeros(2, 4))
    with pytest.raises(ns.NetshrinkError, match="hard-coded size 64"):
        analyze(_HardCoded(), torch.zeros(2, 1, 6, 6))


class _Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Linear(6, 16)
        self.layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=24, batch_first=True, dropout=0.0)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(self.layer(self.emb(x))[:, 0])


def test_transformer_encoder_layer_ffn_shrinks_and_stream_is_pinned():
    torch.manual_seed(0)
    net = _Encoder().eval()
    x = torch.randn(2, 5, 6)
    g = analyze(net, x)
    # the residual stream (emb) is pinned; FFN neurons and heads are the layer's closed groups
    assert [grp.name for grp in g.groups] == ["layer.ffn", "layer.self_attn.heads"]
    with torch.no_grad():
        net.layer.linear1.weight[:10] = 0
        net.layer.linear1.bias[:10] = 0
        before = net(x)
    shrink(net, x)
    assert net.layer.linear1.out_features == 14 and net.layer.linear2.in_features == 14
    torch.testing.assert_close(net(x), before, rtol=0, atol=1e-5)
