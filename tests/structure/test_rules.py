"""Users' own rules and criteria: register_rule for a module and for a torch.library op
(both tracers use the rule by name), register_importance; models whose forward takes
keyword inputs (a dict batch) or two tensors."""
import pytest
import torch
from torch import nn

import netshrink as ns
from netshrink.structure import analyze, register_importance, register_rule, shrink
from netshrink.structure.importance import importance_names


@torch.library.custom_op("nstest::scaled_relu", mutates_args=())
def scaled_relu(x: torch.Tensor, s: float) -> torch.Tensor:
    return torch.relu(x) * s


@scaled_relu.register_fake
def _(x, s):
    return torch.empty_like(x)


class Gate(nn.Module):
    """A learned per-channel gate: x * sigmoid(logit), logit (C,)."""

    def __init__(self, c: int):
        super().__init__()
        self.channels = c
        self.logit = nn.Parameter(torch.randn(c))

    def forward(self, x):
        return x * torch.sigmoid(self.logit)


class _Gated(nn.Module):
    def __init__(self, gate=Gate):
        super().__init__()
        self.fc1, self.gate, self.fc2 = nn.Linear(6, 8), gate(8), nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.gate(self.fc1(x))))


def _gate_rule(ctx, n, m, name, val):
    lbl = ctx.lab(n.args[0])  # (N, C) labels of fc1's units: entry j of logit goes with unit j
    for j, unit in enumerate(lbl.units):
        ctx.units.slot(unit, name, "logit", 0, [j], "norm")
    return lbl


def test_register_rule_for_a_module_makes_its_channels_prunable_and_resizes_it():
    class MyGate(Gate):  # a fresh type: the registration below must not leak into other tests' Gate
        pass

    torch.manual_seed(0)
    x = torch.randn(4, 6)
    # traced through, the gate's parameter is a constant that pins fc1's channels
    assert "fc1" not in [g.name for g in analyze(_Gated(MyGate), x).groups]
    register_rule(MyGate, _gate_rule, resize=lambda m: setattr(m, "channels", m.logit.shape[0]))
    with pytest.raises(ns.NetshrinkError, match="already has a rule"):
        register_rule(MyGate, _gate_rule)
    net = _Gated(MyGate).eval()
    g = analyze(net, x)
    assert [grp.name for grp in g.groups] == ["fc1"]
    with torch.no_grad():
        net.fc1.weight[:3] = 0
        net.fc1.bias[:3] = 0
        before = net(x)
    info = shrink(net, x)
    assert info["removed"] == {"fc1": 3}
    assert net.gate.logit.shape == (5,) and net.gate.channels == 5 and net.fc2.in_features == 5
    torch.testing.assert_close(net(x), before, rtol=0, atol=1e-6)


class _CustomOp(nn.Module):
    def __init__(self, export_only: bool):
        super().__init__()
        self.fc1, self.fc2, self.export_only = nn.Linear(6, 8), nn.Linear(8, 3), export_only

    def forward(self, x):
        if self.export_only:  # torch.finfo of a proxy's dtype: torch.fx cannot trace this, torch.export can
            x = x + torch.finfo(x.dtype).tiny
        return self.fc2(scaled_relu(self.fc1(x), 2.0))


def test_register_rule_for_a_custom_op_is_used_by_both_tracers():
    x = torch.randn(4, 6)
    with pytest.raises(ns.NetshrinkError, match="scaled_relu.*no dependency rule"):
        analyze(_CustomOp(False), x)
    register_rule("nstest::scaled_relu", lambda ctx, n, val: ctx.lab(n.args[0]), replace=True)
    for export_only in (False, True):
        torch.manual_seed(0)
        net = _CustomOp(export_only).eval()
        g = analyze(net, x)
        assert [grp.name for grp in g.groups] == ["fc1"]
        assert g.untraced_reason.startswith("traced with torch.export") == export_only
        with torch.no_grad():
            net.fc1.weight[1::2] = 0
            net.fc1.bias[1::2] = 0
            before = net(x)
        shrink(net, x)
        assert net.fc1.out_features == 4 and net.fc2.in_features == 4
        torch.testing.assert_close(net(x), before, rtol=0, atol=1e-6)
    with pytest.raises(ns.NetshrinkError, match="op name or an nn.Module"):
        register_rule(3, lambda *a: None)


def _mlp_data(n=32):
    g = torch.Generator().manual_seed(0)
    return torch.utils.data.TensorDataset(torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g))


def test_register_importance_adds_a_criterion_channel_prune_accepts():
    def last_first(model, graph, **_):  # unit j scores j: the first units go first
        return {grp.name: torch.arange(len(grp), dtype=torch.float) for grp in graph.groups}

    register_importance("last_first", last_first, replace=True)
    assert "last_first" in importance_names() and "l1" in importance_names()
    with pytest.raises(ns.NetshrinkError, match="already registered"):
        register_importance("last_first", last_first)
    with pytest.raises(ns.RecipeError, match="importance.*last_first"):
        ns.create("channel_prune", importance="nope")
    torch.manual_seed(0)
    model = ns.zoo.models.create("mlp", in_features=6, hidden=[8], num_classes=3).eval()
    w = model.hidden[0].weight.detach().clone()
    m = ns.create("channel_prune", sparsity=0.5, importance="last_first")
    m.prepare(model, ns.core.context.PrepareContext(data=_mlp_data()))
    assert model.hidden[0].out_features == 4
    torch.testing.assert_close(model.hidden[0].weight, w[4:])  # units 0..3 removed, 4..7 kept


class _DictModel(nn.Module):
    """forward(input_ids, attention_mask): an embedding bag over the unmasked tokens."""

    def __init__(self):
        super().__init__()
        self.emb, self.fc1, self.fc2 = nn.Embedding(20, 8), nn.Linear(8, 12), nn.Linear(12, 3)

    def forward(self, input_ids, attention_mask=None, scale=None):
        h = self.emb(input_ids)
        if attention_mask is not None:
            h = h * attention_mask.unsqueeze(-1)
        if scale is not None:  # never given: the default must stay None while tracing
            h = h * scale
        return self.fc2(torch.relu(self.fc1(h.sum(1))))


class _TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(4, 8), nn.Linear(5, 8), nn.Linear(8, 2)

    def forward(self, x1, x2):
        return self.out(torch.relu(self.a(x1) + self.b(x2)))


def test_dict_and_two_tensor_inputs_are_traced_and_shrunk():
    torch.manual_seed(0)
    ids = torch.randint(0, 20, (4, 5))
    batch = {"input_ids": ids, "attention_mask": torch.ones(4, 5)}
    net = _DictModel().eval()
    assert [g.name for g in analyze(net, batch).groups] == ["emb", "fc1"]
    with torch.no_grad():
        net.fc1.weight[:4] = 0
        net.fc1.bias[:4] = 0
        before = net(**batch)
    shrink(net, batch)
    assert net.fc1.out_features == 8
    torch.testing.assert_close(net(**batch), before, rtol=0, atol=1e-6)
    # channel_prune with dict batches (labels are the target, not an input)
    net = _DictModel()
    data = [{**batch, "labels": torch.randint(0, 3, (4,))}] * 2
    m = ns.create("channel_prune", sparsity=0.5, importance="taylor")
    m.prepare(net, ns.core.context.PrepareContext(data=data))
    assert net.fc1.out_features == 6 and net(**batch).shape == (4, 3)
    # two positional tensors: the residual sum couples a's and b's units
    two = _TwoInputs().eval()
    x = (torch.randn(3, 4), torch.randn(3, 5))
    g = analyze(two, x)
    assert [grp.name for grp in g.groups] == ["a+b"] and len(g.groups[0]) == 8
