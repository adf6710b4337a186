"""How each traced op moves channel labels (see graph.py for what a label is).

`LabelInterpreter` runs the fx graph on a real example, so every rule sees the
actual tensors (their shapes) next to its operands' labels. A label is a `Label`
(units along one dim), `PINNED` (every unit of this tensor is pinned: model inputs,
constants, outputs of opaque blocks), None (not a tensor) or a tuple of labels.
"""
from __future__ import annotations

import math
import operator

import torch
import torch.fx as fx
from torch import nn

from netshrink.errors import NetshrinkError
from netshrink.structure.labels import (_BINARY, _ELEMENTWISE_MODULES, _PIN_MODULES, _POOL, _POOL_MODULES, _UNARY,
                                        PINNED, Label)


def _op_name(n: fx.Node) -> str:
    if n.op == "call_method":
        return n.target
    t = n.target
    packet = getattr(t, "_overloadpacket", None)  # an aten op of a torch.export graph: aten.relu.default -> relu
    if packet is not None:
        return packet.__name__
    return getattr(t, "__name__", str(t))


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


def _tensors(v) -> bool:
    if isinstance(v, torch.Tensor):
        return True
    return isinstance(v, (tuple, list)) and any(_tensors(x) for x in v)


class LabelInterpreter(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, units):
        super().__init__(gm)
        self.u = units
        self.labels: dict[fx.Node, object] = {}
        self.producer_dims: dict[str, tuple[int, list[list[int]]]] = {}
        self.mods = dict(gm.named_modules())
        self.attention_ok: dict[str, bool] = {}  # attention module -> its weights output is never read

    # -- helpers ---------------------------------------------------------------
    def fail(self, n: fx.Node, why: str):
        where = n.target if n.op == "call_module" else None
        if where is None:
            stack = n.meta.get("nn_module_stack") or {}
            where = (list(stack.values())[-1][0] if stack and isinstance(list(stack.values())[-1], tuple)
                     else (list(stack.keys())[-1] if stack else "(top level)"))
        where = repr(where) if where else "(top level)"
        raise NetshrinkError(f"structure: cannot analyse op {_op_name(n)!r} (node {n.name}) in module "
                             f"{where}: {why}")

    def labelled(self, a) -> bool:
        """Does any node in `a` (nested lists / dicts) carry channel labels?"""
        if isinstance(a, fx.Node):
            lbl = self.labels.get(a)
            return isinstance(lbl, Label) or (isinstance(lbl, tuple) and any(self._has_label(x) for x in lbl))
        if isinstance(a, (tuple, list)):
            return any(self.labelled(x) for x in a)
        if isinstance(a, dict):
            return any(self.labelled(x) for x in a.values())
        return False

    def _has_label(self, lbl) -> bool:
        return isinstance(lbl, Label) or (isinstance(lbl, tuple) and any(self._has_label(x) for x in lbl))

    def lab(self, a):
        return self.labels.get(a) if isinstance(a, fx.Node) else None

    def pin(self, label) -> None:
        if isinstance(label, Label):
            self.u.pin(label.units)
        elif isinstance(label, tuple):
            for x in label:
                self.pin(x)

    def full(self, label, val: torch.Tensor, dim: int) -> "Label":
        """The label along `dim`, creating pinned units for PINNED / unlabelled tensors."""
        if isinstance(label, Label):
            return label
        return Label(self.u.new(val.shape[dim], pinned=True), dim)

    # -- the interpreter -------------------------------------------------------
    def run_node(self, n: fx.Node):
        val = super().run_node(n)
        if n.op == "placeholder" or n.op == "get_attr":
            self.labels[n] = PINNED if isinstance(val, torch.Tensor) else None
        elif n.op == "output":
            self.pin_all(n.args)
        elif n.op == "call_module":
            self.labels[n] = self.module_rule(n, self.mods[n.target], val)
        else:
            self.labels[n] = self.function_rule(n, val)
        return val

    def pin_all(self, args):
        if isinstance(args, fx.Node):
            self.pin(self.labels.get(args))
        elif isinstance(args, (tuple, list)):
            for a in args:
                self.pin_all(a)
        elif isinstance(args, dict):
            for a in args.values():
                self.pin_all(a)

    # -- modules ---------------------------------------------------------------
    def module_rule(self, n, m, val, name: str | None = None):
        from netshrink.structure.blocks import MHA_TYPES, is_opaque_block
        name = name or n.target
        x = n.args[0] if n.args else None
        xl, xv = self.lab(x), self.env.get(x) if isinstance(x, fx.Node) else None
        if is_opaque_block(m):
            if isinstance(m, MHA_TYPES):
                self.attention_ok[name] = self.attention_ok.get(name, True) and attention_weights_unused(n)
            self.pin_all(list(n.args) + list(n.kwargs.values()))
            return PINNED
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return self.conv(n, name, m, xl, xv)
        if isinstance(m, nn.Linear):
            return self.linear(n, name, m, xl, xv, val)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            lbl = self.full(xl, xv, 1)
            if lbl.dim != 1:
                self.fail(n, "BatchNorm input's channel dim is not dim 1")
            for j, uid in enumerate(lbl.units):
                for p in ("weight", "bias", "running_mean", "running_var"):
                    if getattr(m, p, None) is not None:
                        self.u.slot(uid, name, p, 0, [j], "norm")
            return lbl
        if isinstance(m, (nn.LSTM, nn.GRU)):
            return self.rnn(n, name, m, xl, xv)
        if isinstance(m, nn.Embedding):
            units = self.u.new(m.embedding_dim, producer=name)
            for j, uid in enumerate(units):
                self.u.slot(uid, name, "weight", 1, [j], "out")
            self.producer_dims[name] = (val.dim() - 1, [[j] for j in range(len(units))])
            return Label(units, val.dim() - 1)
        if isinstance(m, _ELEMENTWISE_MODULES):
            return xl
        if isinstance(m, _POOL_MODULES):
            if isinstance(xl, Label) and xl.dim != 1:
                self.fail(n, "pooling over the channel dim")
            return xl
        if isinstance(m, nn.Flatten):
            return self.flatten(n, xl, xv, m.start_dim, m.end_dim)
        if isinstance(m, _PIN_MODULES):  # statistics over channels: removing one changes the others
            self.pin(xl)
            return xl
        if isinstance(m, (nn.Softmax, nn.LogSoftmax)):
            return self.softmax(xl, xv, m.dim)
        self.fail(n, f"no dependency rule for module type {type(m).__name__}")

    def conv(self, n, name, m, xl, xv):
        lbl = self.full(xl, xv, 1)
        if lbl.dim != 1:
            self.fail(n, "convolution input's channel dim is not dim 1")
        depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
        if depthwise:  # output channel j reads only input channel j: the same unit
            for j, uid in enumerate(lbl.units):
                self.u.slot(uid, name, "weight", 0, [j], "out")
                if m.bias is not None:
                    self.u.slot(uid, name, "bias", 0, [j], "out")
            self.producer_dims.setdefault(name, (1, [[j] for j in range(m.out_channels)]))
            return lbl
        if m.groups > 1:  # grouped conv: groups must stay equal, so nothing through it is pruned
            self.pin(lbl)
            return Label(self.u.new(m.out_channels, pinned=True), 1)
        for j, uid in enumerate(lbl.units):
            self.u.slot(uid, name, "weight", 1, [j], "in")
        out = self.u.new(m.out_channels, producer=name)
        for j, uid in enumerate(out):
            self.u.slot(uid, name, "weight", 0, [j], "out")
            if m.bias is not None:
                self.u.slot(uid, name, "bias", 0, [j], "out")
        self.producer_dims[name] = (1, [[j] for j in range(m.out_channels)])
        return Label(out, 1)

    def linear(self, n, name, m, xl, xv, val):
        last = xv.dim() - 1
        lbl = self.full(xl, xv, last)
        if lbl.dim != last:
            self.fail(n, f"Linear reads the last dim but the channels are on dim {lbl.dim}")
        for j, uid in enumerate(lbl.units):
            self.u.slot(uid, name, "weight", 1, [j], "in")
        out = self.u.new(m.out_features, producer=name)
        for j, uid in enumerate(out):
            self.u.slot(uid, name, "weight", 0, [j], "out")
            if m.bias is not None:
                self.u.slot(uid, name, "bias", 0, [j], "out")
        self.producer_dims[name] = (val.dim() - 1, [[j] for j in range(m.out_features)])
        return Label(out, val.dim() - 1)

    def rnn(self, n, name, m, xl, xv):
        if getattr(m, "proj_size", 0):
            self.fail(n, "LSTM with proj_size > 0")
        H, G, D = m.hidden_size, 4 if isinstance(m, nn.LSTM) else 3, 2 if m.bidirectional else 1
        last = xv.dim() - 1
        lbl = self.full(xl, xv, last)
        if lbl.dim != last:
            self.fail(n, f"{type(m).__name__} reads the last dim but the channels are on dim {lbl.dim}")
        # Unit j = hidden unit j of every layer and direction (nn.LSTM has one hidden_size).
        units = self.u.new(H, producer=name)
        for d in range(D):
            sfx0 = "_l0" + ("_reverse" if d else "")
            for p, uid in enumerate(lbl.units):
                self.u.slot(uid, name, "weight_ih" + sfx0, 1, [p], "in")
        for j, uid in enumerate(units):
            gates = [g * H + j for g in range(G)]  # rows of gate g for unit j: (G*H, in)
            for layer in range(m.num_layers):
                for d in range(D):
                    sfx = f"_l{layer}" + ("_reverse" if d else "")
                    self.u.slot(uid, name, "weight_ih" + sfx, 0, gates, "out")
                    self.u.slot(uid, name, "weight_hh" + sfx, 0, gates, "out")
                    self.u.slot(uid, name, "weight_hh" + sfx, 1, [j], "in")
                    if m.bias:
                        self.u.slot(uid, name, "bias_ih" + sfx, 0, gates, "out")
                        self.u.slot(uid, name, "bias_hh" + sfx, 0, gates, "out")
                    if layer > 0:  # input of layer l: [forward hidden, backward hidden] of layer l-1
                        self.u.slot(uid, name, "weight_ih" + sfx, 1, [dd * H + j for dd in range(D)], "in")
        out_units = [units[j] for _ in range(D) for j in range(H)]
        self.producer_dims[name] = (last, [[d * H + j for d in range(D)] for j in range(H)])
        h = Label(list(units), 2)  # h_n: (layers*D, N, H)
        return (Label(out_units, last), (h, Label(list(units), 2)) if isinstance(m, nn.LSTM) else h)

    # -- functions and methods -------------------------------------------------
    def function_rule(self, n, val):
        op = _op_name(n)
        a0 = n.args[0] if n.args else None
        l0 = self.lab(a0)
        v0 = self.env.get(a0) if isinstance(a0, fx.Node) else a0
        if not self.labelled(list(n.args) + list(n.kwargs.values())):
            # no prunable channels flow in (a mask built with torch.full, aten.zeros for an LSTM's state):
            # the result's units are new and pinned, nothing is coupled
            return PINNED if _tensors(val) else None
        if op == "unbind" and isinstance(l0, Label):
            return tuple(self.index_dim(n, l0, v0, val[0], n.args[1] if len(n.args) > 1 else 0) for _ in val)
        if not isinstance(val, torch.Tensor) and op not in ("getitem",):
            if isinstance(val, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in val):
                self.fail(n, "op returns several tensors")
            return None  # sizes, shapes, python numbers
        if op in _UNARY:
            return l0
        if op in _POOL:
            if isinstance(l0, Label) and l0.dim != 1:
                self.fail(n, "pooling over the channel dim")
            return l0
        if op in _BINARY or n.target in (operator.add, operator.mul, operator.sub, operator.truediv):
            return self.binary(n, val)
        if op in ("cat", "concat"):
            return self.cat(n, val)
        if op == "flatten":
            start = n.args[1] if len(n.args) > 1 else n.kwargs.get("start_dim", 0)
            end = n.args[2] if len(n.args) > 2 else n.kwargs.get("end_dim", -1)
            return self.flatten(n, l0, v0, start, end)
        if op in ("view", "reshape"):
            return self.reshape(n, l0, v0, val)
        if op == "getitem":
            return self.getitem(n, l0, v0)
        if op in ("mean", "sum", "amax", "amin"):
            return self.reduce(n, l0, v0, val)
        if op in ("softmax", "log_softmax"):
            dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
            return self.softmax(l0, v0, dim)
        if op in ("transpose", "permute", "unsqueeze", "squeeze"):
            return self.move(n, op, l0, v0, val)
        if op == "select" and isinstance(l0, Label):
            return self.index_dim(n, l0, v0, val, n.args[1])
        if op == "slice" and isinstance(l0, Label):  # aten.slice(x, dim, start, end, step)
            d = (n.args[1] if len(n.args) > 1 else 0) % v0.dim()
            if d == l0.dim and val.shape[d] != v0.shape[d]:
                self.fail(n, "slicing the channel dim")
            return l0
        if op == "stack":
            return self.stack(n, val)
        if op == "flip" and isinstance(l0, Label):  # reversed along the channels: the units in reverse order
            dims = n.args[1] if len(n.args) > 1 else n.kwargs.get("dims")
            dims = [d % v0.dim() for d in (dims if isinstance(dims, (tuple, list)) else [dims])]
            return Label(l0.units[::-1], l0.dim) if l0.dim in dims else l0
        self.fail(n, "no dependency rule for this op")

    def index_dim(self, n, lbl, v, val, dim):
        """select / unbind along `dim`: that dim goes away (it must not be the channels)."""
        d = dim % v.dim()
        if d == lbl.dim:
            self.fail(n, "indexing into the channel dim")
        return Label(lbl.units, lbl.dim - (d < lbl.dim))

    def stack(self, n, val):
        tensors = n.args[0]
        dim = (n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)) % val.dim()
        labels = [self.lab(t) for t in tensors]
        real = [lb for lb in labels if isinstance(lb, Label)]
        if not real:
            return PINNED
        first = self.binary_like(n, real, labels)  # index i of every stacked tensor: one unit
        return Label(first.units, first.dim + (dim <= first.dim))

    def binary(self, n, val):
        outs = []
        for a in n.args[:2]:
            v = self.env.get(a) if isinstance(a, fx.Node) else a
            if not isinstance(v, torch.Tensor) or v.numel() == 1:
                continue
            lbl = self.lab(a)
            shift = val.dim() - v.dim()
            if isinstance(lbl, Label):
                d = lbl.dim + shift
                if v.shape[lbl.dim] == 1 and val.shape[d] != 1:
                    self.pin(lbl)  # broadcast along the channels: couples nothing, but keep it whole
                    continue
                outs.append(Label(lbl.units, d))
            else:
                outs.append(PINNED)
        labels = [o for o in outs if isinstance(o, Label)]
        if not labels:
            return PINNED
        first = labels[0]
        for o in labels[1:]:
            if o.dim != first.dim:
                self.fail(n, f"operands carry channels on different dims ({first.dim} and {o.dim})")
            for a, b in zip(first.units, o.units):  # residual: index i of both is one unit
                self.u.union(a, b)
        if any(o is PINNED for o in outs):
            self.pin(first)
        return first

    def cat(self, n, val):
        tensors = n.args[0]
        dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
        dim = dim % val.dim()
        vals = [self.env[t] for t in tensors]
        labels = [self.lab(t) for t in tensors]
        real = [l for l in labels if isinstance(l, Label)]
        if not real:
            return PINNED
        if all(l.dim == dim for l in real):  # concatenation of channels: labels join, offsets follow
            parts = [self.full(l, v, dim) for l, v in zip(labels, vals)]
            return Label([u for p in parts for u in p.units], dim)
        if any(l.dim == dim for l in real):
            self.fail(n, "concatenation mixes channel and non-channel dims")
        return self.binary_like(n, real, labels)

    def binary_like(self, n, real, labels):
        first = real[0]
        for o in real[1:]:
            if o.dim != first.dim:
                self.fail(n, "operands carry channels on different dims")
            for a, b in zip(first.units, o.units):
                self.u.union(a, b)
        if any(l is PINNED for l in labels):
            self.pin(first)
        return first

    def flatten(self, n, lbl, v, start, end):
        if not isinstance(lbl, Label):
            return lbl
        nd = v.dim()
        start, end = start % nd, end % nd
        c = lbl.dim
        if c < start:
            return lbl
        if c > end:
            return Label(lbl.units, c - (end - start))
        # channel c spreads over prod(shape[c+1:end+1]) consecutive positions, the
        # whole block repeated prod(shape[start:c]) times: (N, C, H, W) -> (N, C*H*W).
        inner = math.prod(v.shape[c + 1:end + 1])
        outer = math.prod(v.shape[start:c])
        units = [u for u in lbl.units for _ in range(inner)] * outer
        return Label(units, start)

    def reshape(self, n, lbl, v, val):
        if not isinstance(lbl, Label):
            return lbl
        ins, outs, c = list(v.shape), list(val.shape), lbl.dim
        if ins[:c + 1] == outs[:c + 1]:  # dims up to the channels unchanged
            return lbl
        shape_args = n.args[1:] if len(n.args) > 2 or not isinstance(n.args[1] if len(n.args) > 1 else None,
                                                                      (tuple, list)) else n.args[1]
        for s in range(len(outs)):
            for e in range(s, len(ins)):
                if ins[:s] == outs[:s] and math.prod(ins[s:e + 1]) == outs[s] and ins[e + 1:] == outs[s + 1:]:
                    if s <= c <= e and s < len(shape_args) and isinstance(shape_args[s], int) \
                            and shape_args[s] != -1 and e > s:
                        self.fail(n, f"reshape to a hard-coded size {shape_args[s]} over the channels "
                                     "(use -1 or torch.flatten so a smaller model still fits)")
                    return self.flatten(n, lbl, v, s, e)
        self.fail(n, f"reshape {tuple(ins)} -> {tuple(outs)} moves the channel dim {c}")

    def getitem(self, n, lbl, v):
        idx = n.args[1]
        if not isinstance(v, torch.Tensor):
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
                    self.fail(n, "indexing into the channel dim")
                return Label(lbl.units, out_dim)
            if isinstance(i, int):
                src += 1
            elif isinstance(i, slice):
                src += 1
                out_dim += 1
            else:
                self.fail(n, "advanced indexing")
        return Label(lbl.units, out_dim + (lbl.dim - src))

    def reduce(self, n, lbl, v, val):
        if not isinstance(lbl, Label):
            return lbl
        dims = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim")
        keep = n.kwargs.get("keepdim", n.args[2] if len(n.args) > 2 else False)
        if dims is None:
            self.pin(lbl)
            return None
        dims = [d % v.dim() for d in (dims if isinstance(dims, (tuple, list)) else [dims])]
        if lbl.dim in dims:  # a mean over channels depends on how many there are
            self.pin(lbl)
            return PINNED
        return Label(lbl.units, lbl.dim if keep else lbl.dim - sum(d < lbl.dim for d in dims))

    def softmax(self, lbl, v, dim):
        if isinstance(lbl, Label) and dim is not None and dim % v.dim() == lbl.dim:
            self.pin(lbl)
        return lbl

    def move(self, n, op, lbl, v, val):
        if not isinstance(lbl, Label):
            return lbl
        c, nd = lbl.dim, v.dim()
        if op == "transpose":
            a, b = n.args[1] % nd, n.args[2] % nd
            return Label(lbl.units, b if c == a else a if c == b else c)
        if op == "permute":
            perm = n.args[1] if isinstance(n.args[1], (tuple, list)) else n.args[1:]
            return Label(lbl.units, [p % nd for p in perm].index(c))
        if op == "unsqueeze":
            d = n.args[1] % (nd + 1)
            return Label(lbl.units, c + 1 if d <= c else c)
        # squeeze: the channel dim keeps its size, count the dims dropped before it
        dropped = [i for i in range(c) if v.shape[i] == 1 and (len(n.args) < 2 or i == n.args[1] % nd)]
        return Label(lbl.units, c - len(dropped))
