"""How modules move channel labels, and how a module is resized after a shrink.

A module rule is `rule(ctx, n, m, name, val) -> label`: `m` the module called at node
`n`, `name` its path in the model (slots are addressed by it), `val` its output;
`ctx` as for op rules (op_rules.py). A producer (Conv, Linear, LSTM, Embedding)
creates new units (`ctx.units.new(k, producer=name)`), records the rows each unit
owns and the columns it feeds (`ctx.units.slot(unit, name, param, dim, [pos], role)`)
and where its output carries them (`ctx.producer_dims`). A resize
`resize(m)` makes a module's size attributes agree with its smaller tensors.
`BUILTIN` / `RESIZERS` are keyed by module type (the first class of type(m)'s MRO
that is listed wins, as isinstance); `rules.register_rule` adds users' own.
"""
from __future__ import annotations

import operator

import torch.fx as fx
from torch import nn

from netshrink.structure.blocks import MHA_TYPES, OPAQUE_TYPES
from netshrink.structure.labels import PINNED, Label
from netshrink.structure.op_rules import check_pool, flatten_label, softmax_label

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _input(ctx, n):
    """(label, value) of the module's first input."""
    x = n.args[0] if n.args else None
    return ctx.lab(x), ctx.value(x)


def _produce(ctx, name: str, count: int, bias: bool, dim: int) -> Label:
    """`count` new units, unit j owning row j of `name`'s weight (and bias)."""
    out = ctx.units.new(count, producer=name)
    for j, uid in enumerate(out):
        ctx.units.slot(uid, name, "weight", 0, [j], "out")
        if bias:
            ctx.units.slot(uid, name, "bias", 0, [j], "out")
    ctx.producer_dims[name] = (dim, [[j] for j in range(count)])
    return Label(out, dim)


# -- blocks analysed by rule (blocks.py) --------------------------------------------------
def attention_weights_unused(n: fx.Node) -> bool:
    """An attention call whose second output (the weights, averaged over heads) nothing reads."""
    if n.kwargs.get("need_weights") is False:
        return True
    for u in n.users:
        if u.op == "call_function" and u.target is operator.getitem and isinstance(u.args[1], int):
            if u.args[1] == 0 or not u.users:
                continue
        return False
    return True


def opaque(ctx, n, m, name, val):
    """A block kept whole: inputs and outputs pinned (its closed groups come from blocks.py)."""
    if isinstance(m, MHA_TYPES):
        ctx.attention_ok[name] = ctx.attention_ok.get(name, True) and attention_weights_unused(n)
    ctx.pin_all(list(n.args) + list(n.kwargs.values()))
    return PINNED


# -- producers -----------------------------------------------------------------------------
def conv(ctx, n, m, name, val):
    xl, xv = _input(ctx, n)
    lbl = ctx.full(xl, xv, 1)
    if lbl.dim != 1:
        ctx.fail(n, "convolution input's channel dim is not dim 1")
    if m.groups > 1 and m.groups == m.in_channels == m.out_channels:
        # depthwise: output channel j reads only input channel j: the same unit
        for j, uid in enumerate(lbl.units):
            ctx.units.slot(uid, name, "weight", 0, [j], "out")
            if m.bias is not None:
                ctx.units.slot(uid, name, "bias", 0, [j], "out")
        ctx.producer_dims.setdefault(name, (1, [[j] for j in range(m.out_channels)]))
        return lbl
    if m.groups > 1:  # grouped conv: groups must stay equal, so nothing through it is pruned
        ctx.pin(lbl)
        return Label(ctx.units.new(m.out_channels, pinned=True), 1)
    for j, uid in enumerate(lbl.units):
        ctx.units.slot(uid, name, "weight", 1, [j], "in")
    return _produce(ctx, name, m.out_channels, m.bias is not None, 1)


def linear(ctx, n, m, name, val):
    """weight (out, in) reads the last dim; works for any module with that layout."""
    xl, xv = _input(ctx, n)
    last = xv.dim() - 1
    lbl = ctx.full(xl, xv, last)
    if lbl.dim != last:
        ctx.fail(n, f"Linear reads the last dim but the channels are on dim {lbl.dim}")
    for j, uid in enumerate(lbl.units):
        ctx.units.slot(uid, name, "weight", 1, [j], "in")
    return _produce(ctx, name, m.weight.shape[0], getattr(m, "bias", None) is not None, val.dim() - 1)


def embedding(ctx, n, m, name, val):
    units = ctx.units.new(m.embedding_dim, producer=name)
    for j, uid in enumerate(units):
        ctx.units.slot(uid, name, "weight", 1, [j], "out")
    ctx.producer_dims[name] = (val.dim() - 1, [[j] for j in range(len(units))])
    return Label(units, val.dim() - 1)


def rnn(ctx, n, m, name, val):
    if getattr(m, "proj_size", 0):
        ctx.fail(n, "LSTM with proj_size > 0")
    xl, xv = _input(ctx, n)
    H, G, D = m.hidden_size, 4 if isinstance(m, nn.LSTM) else 3, 2 if m.bidirectional else 1
    last = xv.dim() - 1
    lbl = ctx.full(xl, xv, last)
    if lbl.dim != last:
        ctx.fail(n, f"{type(m).__name__} reads the last dim but the channels are on dim {lbl.dim}")
    # Unit j = hidden unit j of every layer and direction (nn.LSTM has one hidden_size).
    units = ctx.units.new(H, producer=name)
    for d in range(D):
        sfx0 = "_l0" + ("_reverse" if d else "")
        for p, uid in enumerate(lbl.units):
            ctx.units.slot(uid, name, "weight_ih" + sfx0, 1, [p], "in")
    for j, uid in enumerate(units):
        gates = [g * H + j for g in range(G)]  # rows of gate g for unit j: (G*H, in)
        for layer in range(m.num_layers):
            for d in range(D):
                sfx = f"_l{layer}" + ("_reverse" if d else "")
                ctx.units.slot(uid, name, "weight_ih" + sfx, 0, gates, "out")
                ctx.units.slot(uid, name, "weight_hh" + sfx, 0, gates, "out")
                ctx.units.slot(uid, name, "weight_hh" + sfx, 1, [j], "in")
                if m.bias:
                    ctx.units.slot(uid, name, "bias_ih" + sfx, 0, gates, "out")
                    ctx.units.slot(uid, name, "bias_hh" + sfx, 0, gates, "out")
                if layer > 0:  # input of layer l: [forward hidden, backward hidden] of layer l-1
                    ctx.units.slot(uid, name, "weight_ih" + sfx, 1, [dd * H + j for dd in range(D)], "in")
    out_units = [units[j] for _ in range(D) for j in range(H)]
    ctx.producer_dims[name] = (last, [[d * H + j for d in range(D)] for j in range(H)])
    h = Label(list(units), 2)  # h_n: (layers*D, N, H)
    return (Label(out_units, last), (h, Label(list(units), 2)) if isinstance(m, nn.LSTM) else h)


# -- consumers that keep the channels --------------------------------------------------------
def batch_norm(ctx, n, m, name, val):
    xl, xv = _input(ctx, n)
    lbl = ctx.full(xl, xv, 1)
    if lbl.dim != 1:
        ctx.fail(n, "BatchNorm input's channel dim is not dim 1")
    for j, uid in enumerate(lbl.units):
        for p in ("weight", "bias", "running_mean", "running_var"):
            if getattr(m, p, None) is not None:
                ctx.units.slot(uid, name, p, 0, [j], "norm")
    return lbl


def passthrough(ctx, n, m, name, val):
    """Element-wise: the output's channels are the input's (activations, dropout, Identity)."""
    return _input(ctx, n)[0]


def pool(ctx, n, m, name, val):
    return check_pool(ctx, n, _input(ctx, n)[0])


def flatten(ctx, n, m, name, val):
    xl, xv = _input(ctx, n)
    return flatten_label(xl, xv, m.start_dim, m.end_dim)


def pin_channels(ctx, n, m, name, val):
    """Statistics over channels (LayerNorm, GroupNorm): removing one changes the others."""
    xl = _input(ctx, n)[0]
    ctx.pin(xl)
    return xl


def softmax(ctx, n, m, name, val):
    xl, xv = _input(ctx, n)
    return softmax_label(ctx, xl, xv, m.dim)


# -- resizing after a shrink ---------------------------------------------------------------
def resize_linear(m: nn.Linear) -> None:
    m.out_features, m.in_features = m.weight.shape


def resize_conv(m) -> None:
    m.out_channels = m.weight.shape[0]
    if m.groups > 1:  # depthwise (the only grouped conv that shrinks): groups follow the channels
        m.groups = m.in_channels = m.out_channels
    else:
        m.in_channels = m.weight.shape[1]


def resize_batch_norm(m) -> None:
    ref = m.weight if m.weight is not None else m.running_mean
    m.num_features = ref.shape[0]


def resize_conv1d(m) -> None:
    """transformers' Conv1D: weight (nx, nf)."""
    m.nx, m.nf = m.weight.shape


def resize_embedding(m: nn.Embedding) -> None:
    m.embedding_dim = m.weight.shape[1]


def resize_rnn(m) -> None:
    m.hidden_size = m.weight_hh_l0.shape[1]
    m.input_size = m.weight_ih_l0.shape[1]
    m._init_flat_weights()  # the cuDNN/flat view still points at the old tensors


def _by_type(*entries) -> dict:
    return {t: rule for types, rule in entries for t in (types if isinstance(types, tuple) else (types,))}


BUILTIN = _by_type(
    (OPAQUE_TYPES, opaque),
    (_CONV, conv),
    (nn.Linear, linear),
    (_BN, batch_norm),
    ((nn.LSTM, nn.GRU), rnn),
    (nn.Embedding, embedding),
    ((nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh, nn.ELU, nn.Hardswish,
      nn.Hardsigmoid, nn.Mish, nn.Softplus, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity), passthrough),
    ((nn.MaxPool1d, nn.MaxPool2d, nn.AvgPool1d, nn.AvgPool2d, nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d,
      nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d), pool),
    (nn.Flatten, flatten),
    ((nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d), pin_channels),
    ((nn.Softmax, nn.LogSoftmax), softmax),
)

RESIZERS = _by_type(
    (nn.Linear, resize_linear),
    (_CONV, resize_conv),
    (_BN, resize_batch_norm),
    (nn.Embedding, resize_embedding),
    ((nn.LSTM, nn.GRU), resize_rnn),
)
