"""How functions and tensor methods move channel labels: one small rule per op family.

A rule is `rule(ctx, n, val) -> label`: `n` the fx node (its args are nodes or
constants), `val` its output on the example, `ctx` the running interpreter
(`ctx.lab(a)` / `ctx.value(a)`: an argument's label / value; `ctx.pin(label)`,
`ctx.full(label, value, dim)`, `ctx.units` (new units, slots, unions),
`ctx.fail(n, why)`). The interpreter calls a rule only when a labelled tensor flows
in and the output is a tensor (or a tuple of tensors, for getitem / unbind and the
ops users register). `BUILTIN` maps op names (fx: function / method name; ATen:
the overload packet, aten.relu.default -> "relu") to rules; `rules.register_rule`
adds users' own.
"""
from __future__ import annotations

import math

import torch

from netshrink.structure.labels import PINNED, Label


def _a0(ctx, n):
    """(label, value) of the first argument."""
    a0 = n.args[0] if n.args else None
    return ctx.lab(a0), ctx.value(a0)


def _arg(n, i: int, key: str, default=None):
    return n.args[i] if len(n.args) > i else n.kwargs.get(key, default)


# -- label algebra shared with the module rules -------------------------------------
def unite(ctx, n, real: list, labels: list) -> Label:
    """Index i of every operand is one unit (residual addition, stack, cat off the channels)."""
    first = real[0]
    for o in real[1:]:
        if o.dim != first.dim:
            ctx.fail(n, "operands carry channels on different dims")
        for a, b in zip(first.units, o.units):
            ctx.units.union(a, b)
    if any(lb is PINNED for lb in labels):
        ctx.pin(first)
    return first


def flatten_label(lbl, v: torch.Tensor, start: int, end: int):
    """Dims start..end merged: channel c spreads over prod(shape[c+1:end+1]) consecutive
    positions, the whole block repeated prod(shape[start:c]) times: (N, C, H, W) -> (N, C*H*W)."""
    if not isinstance(lbl, Label):
        return lbl
    nd = v.dim()
    start, end = start % nd, end % nd
    c = lbl.dim
    if c < start:
        return lbl
    if c > end:
        return Label(lbl.units, c - (end - start))
    inner = math.prod(v.shape[c + 1:end + 1])
    outer = math.prod(v.shape[start:c])
    return Label([u for u in lbl.units for _ in range(inner)] * outer, start)


def softmax_label(ctx, lbl, v, dim):
    """A softmax over the channels couples them all: pinned."""
    if isinstance(lbl, Label) and dim is not None and dim % v.dim() == lbl.dim:
        ctx.pin(lbl)
    return lbl


def check_pool(ctx, n, lbl):
    if isinstance(lbl, Label) and lbl.dim != 1:
        ctx.fail(n, "pooling over the channel dim")
    return lbl


# -- element-wise ---------------------------------------------------------------------
def unary(ctx, n, val):
    return ctx.lab(n.args[0] if n.args else None)


def first_operand(ctx, n, val):
    """Element-wise in the first operand, the rest constants (clamp bounds, dtypes)."""
    if ctx.labelled(list(n.args[1:]) + list(n.kwargs.values())):
        ctx.fail(n, "no dependency rule for this op")
    return ctx.lab(n.args[0])


def pool(ctx, n, val):
    return check_pool(ctx, n, ctx.lab(n.args[0]))


def norm(ctx, n, val):
    """LayerNorm / GroupNorm / InstanceNorm: statistics over channels, removing one changes the others."""
    lbl = ctx.lab(n.args[0])
    ctx.pin(lbl)
    return lbl if isinstance(val, torch.Tensor) else PINNED


def binary(ctx, n, val):
    outs, consts = [], []
    for a in n.args[:2]:
        v = ctx.value(a)
        if not isinstance(v, torch.Tensor) or v.numel() == 1:
            continue
        lbl = ctx.lab(a)
        shift = val.dim() - v.dim()
        if isinstance(lbl, Label):
            d = lbl.dim + shift
            if v.shape[lbl.dim] == 1 and val.shape[d] != 1:
                ctx.pin(lbl)  # broadcast along the channels: couples nothing, but keep it whole
                continue
            outs.append(Label(lbl.units, d))
        else:
            outs.append(PINNED)
            consts.append((v, shift))
    labels = [o for o in outs if isinstance(o, Label)]
    if not labels:
        return PINNED
    first = labels[0]
    for o in labels[1:]:
        if o.dim != first.dim:
            ctx.fail(n, f"operands carry channels on different dims ({first.dim} and {o.dim})")
        for a, b in zip(first.units, o.units):  # residual: index i of both is one unit
            ctx.units.union(a, b)
    # a constant operand (a mask, a learned scale) pins the channels, unless it is broadcast
    # along them (size 1 there, or no such dim): then it is the same for every channel
    if any(first.dim - s >= 0 and v.shape[first.dim - s] != 1 for v, s in consts):
        ctx.pin(first)
    return first


# -- joining ----------------------------------------------------------------------------
def cat(ctx, n, val):
    tensors = n.args[0]
    dim = _arg(n, 1, "dim", 0) % val.dim()
    labels = [ctx.lab(t) for t in tensors]
    real = [lb for lb in labels if isinstance(lb, Label)]
    if not real:
        return PINNED
    if all(lb.dim == dim for lb in real):  # concatenation of channels: labels join, offsets follow
        parts = [ctx.full(lb, ctx.value(t), dim) for lb, t in zip(labels, tensors)]
        return Label([u for p in parts for u in p.units], dim)
    if any(lb.dim == dim for lb in real):
        ctx.fail(n, "concatenation mixes channel and non-channel dims")
    return unite(ctx, n, real, labels)


def stack(ctx, n, val):
    dim = _arg(n, 1, "dim", 0) % val.dim()
    labels = [ctx.lab(t) for t in n.args[0]]
    real = [lb for lb in labels if isinstance(lb, Label)]
    if not real:
        return PINNED
    first = unite(ctx, n, real, labels)  # index i of every stacked tensor: one unit
    return Label(first.units, first.dim + (dim <= first.dim))


# -- shapes -----------------------------------------------------------------------------
def flatten(ctx, n, val):
    l0, v0 = _a0(ctx, n)
    return flatten_label(l0, v0, _arg(n, 1, "start_dim", 0), _arg(n, 2, "end_dim", -1))


def reshape(ctx, n, val):
    """view / reshape: fine when the channels' dim and those before it stay, or when the
    channels merge with the dims after them (a flatten)."""
    lbl, v = _a0(ctx, n)
    if not isinstance(lbl, Label):
        return lbl
    ins, outs, c = list(v.shape), list(val.shape), lbl.dim
    if ins[:c + 1] == outs[:c + 1]:  # dims up to the channels unchanged
        return lbl
    tail = len(ins) - c  # the channels and the dims after them unchanged, the leading dims regrouped
    if len(outs) >= tail and ins[c:] == outs[len(outs) - tail:] and math.prod(ins[:c]) == math.prod(outs[:-tail]):
        return Label(lbl.units, len(outs) - tail)
    shape_args = n.args[1:] if len(n.args) > 2 or not isinstance(n.args[1] if len(n.args) > 1 else None,
                                                                  (tuple, list)) else n.args[1]
    for s in range(len(outs)):
        for e in range(s, len(ins)):
            if ins[:s] == outs[:s] and math.prod(ins[s:e + 1]) == outs[s] and ins[e + 1:] == outs[s + 1:]:
                if s <= c <= e and s < len(shape_args) and isinstance(shape_args[s], int) \
                        and shape_args[s] != -1 and e > s:
                    ctx.fail(n, f"reshape to a hard-coded size {shape_args[s]} over the channels "
                                "(use -1 or torch.flatten so a smaller model still fits)")
                return flatten_label(lbl, v, s, e)
    ctx.fail(n, f"reshape {tuple(ins)} -> {tuple(outs)} moves the channel dim {c}")


def transpose(ctx, n, val):
    lbl, v = _a0(ctx, n)
    if not isinstance(lbl, Label):
        return lbl
    a, b, c = n.args[1] % v.dim(), n.args[2] % v.dim(), lbl.dim
    return Label(lbl.units, b if c == a else a if c == b else c)


def permute(ctx, n, val):
    lbl, v = _a0(ctx, n)
    if not isinstance(lbl, Label):
        return lbl
    perm = n.args[1] if isinstance(n.args[1], (tuple, list)) else n.args[1:]
    return Label(lbl.units, [p % v.dim() for p in perm].index(lbl.dim))


def unsqueeze(ctx, n, val):
    lbl, v = _a0(ctx, n)
    if not isinstance(lbl, Label):
        return lbl
    d = n.args[1] % (v.dim() + 1)
    return Label(lbl.units, lbl.dim + 1 if d <= lbl.dim else lbl.dim)


def squeeze(ctx, n, val):
    """The channel dim keeps its size: count the dims dropped before it."""
    lbl, v = _a0(ctx, n)
    if not isinstance(lbl, Label):
        return lbl
    c, nd = lbl.dim, v.dim()
    dropped = [i for i in range(c) if v.shape[i] == 1 and (len(n.args) < 2 or i == n.args[1] % nd)]
    return Label(lbl.units, c - len(dropped))


def flip(ctx, n, val):
    """Reversed along the channels: the units in reverse order."""
    lbl, v = _a0(ctx, n)
    if not isinstance(lbl, Label):
        ctx.fail(n, "no dependency rule for this op")
    dims = _arg(n, 1, "dims")
    dims = [d % v.dim() for d in (dims if isinstance(dims, (tuple, list)) else [dims])]
    return Label(lbl.units[::-1], lbl.dim) if lbl.dim in dims else lbl


# -- indexing ---------------------------------------------------------------------------
def _drop_dim(ctx, n, lbl, v, dim):
    """select / unbind along `dim`: that dim goes away (it must not be the channels)."""
    d = dim % v.dim()
    if d == lbl.dim:
        ctx.fail(n, "indexing into the channel dim")
    return Label(lbl.units, lbl.dim - (d < lbl.dim))


def select(ctx, n, val):
    lbl, v = _a0(ctx, n)
    if not isinstance(lbl, Label):
        ctx.fail(n, "no dependency rule for this op")
    return _drop_dim(ctx, n, lbl, v, n.args[1])


def unbind(ctx, n, val):
    lbl, v = _a0(ctx, n)
    if not isinstance(lbl, Label):
        ctx.fail(n, "op returns several tensors")
    return tuple(_drop_dim(ctx, n, lbl, v, _arg(n, 1, "dim", 0)) for _ in val)


def slice_(ctx, n, val):
    """aten.slice(x, dim, start, end, step): fine off the channels."""
    lbl, v = _a0(ctx, n)
    if not isinstance(lbl, Label):
        ctx.fail(n, "no dependency rule for this op")
    d = (n.args[1] if len(n.args) > 1 else 0) % v.dim()
    if d == lbl.dim and val.shape[d] != v.shape[d]:
        ctx.fail(n, "slicing the channel dim")
    return lbl


def getitem(ctx, n, val):
    lbl, v = _a0(ctx, n)
    idx = n.args[1]
    if not isinstance(v, torch.Tensor):  # an element of a tuple (an LSTM's (out, (h, c)))
        if isinstance(lbl, (tuple, list)) and isinstance(idx, int):
            return lbl[idx]
        return lbl if lbl is PINNED else None
    if not isinstance(lbl, Label):
        return lbl
    idx = idx if isinstance(idx, tuple) else (idx,)
    if any(i is Ellipsis for i in idx):
        k = idx.index(Ellipsis)
        fill = v.dim() - (len(idx) - 1 - sum(i is None for i in idx))
        idx = idx[:k] + (slice(None),) * fill + idx[k + 1:]
    out_dim, src = 0, 0
    for i in idx:
        if i is None:
            out_dim += 1
            continue
        if src == lbl.dim:
            if not (isinstance(i, slice) and i == slice(None)):
                ctx.fail(n, "indexing into the channel dim")
            return Label(lbl.units, out_dim)
        if isinstance(i, int):
            src += 1
        elif isinstance(i, slice):
            src += 1
            out_dim += 1
        else:
            ctx.fail(n, "advanced indexing")
    return Label(lbl.units, out_dim + (lbl.dim - src))


# -- reductions ---------------------------------------------------------------------------
def reduce(ctx, n, val):
    lbl, v = _a0(ctx, n)
    if not isinstance(lbl, Label):
        return lbl
    dims = _arg(n, 1, "dim")
    keep = n.kwargs.get("keepdim", n.args[2] if len(n.args) > 2 else False)
    if dims is None:
        ctx.pin(lbl)
        return None
    dims = [d % v.dim() for d in (dims if isinstance(dims, (tuple, list)) else [dims])]
    if lbl.dim in dims:  # a mean over channels depends on how many there are
        ctx.pin(lbl)
        return PINNED
    return Label(lbl.units, lbl.dim if keep else lbl.dim - sum(d < lbl.dim for d in dims))


def softmax(ctx, n, val):
    lbl, v = _a0(ctx, n)
    return softmax_label(ctx, lbl, v, _arg(n, 1, "dim"))


def _table(*entries) -> dict:
    out = {}
    for names, rule in entries:
        for name in names.split():
            out[name] = rule
    return out


BUILTIN = _table(
    ("relu relu_ gelu sigmoid tanh silu hardswish hardsigmoid elu leaky_relu relu6 softplus mish dropout "
     "dropout1d dropout2d contiguous clone neg abs float detach to type sigmoid_ tanh_", unary),
    # ATen spellings of element-wise ops with constant extra operands
    ("hardtanh hardtanh_ clamp clamp_min clamp_max alias _to_copy lift_fresh_copy gelu_ silu_ _unsafe_view",
     first_operand),
    ("max_pool1d max_pool2d max_pool3d avg_pool1d avg_pool2d avg_pool3d adaptive_avg_pool1d adaptive_avg_pool2d "
     "adaptive_avg_pool3d adaptive_max_pool1d adaptive_max_pool2d boolean_dispatch", pool),
    ("layer_norm group_norm instance_norm native_layer_norm native_group_norm", norm),
    ("add sub mul truediv div iadd isub imul add_ mul_ sub_", binary),
    ("cat concat", cat),
    ("stack", stack),
    ("flatten", flatten),
    ("view reshape", reshape),
    ("transpose", transpose),
    ("permute", permute),
    ("unsqueeze", unsqueeze),
    ("squeeze", squeeze),
    ("flip", flip),
    ("select", select),
    ("unbind", unbind),
    ("slice", slice_),
    ("getitem", getitem),
    ("mean sum amax amin", reduce),
    ("softmax log_softmax", softmax),
)
