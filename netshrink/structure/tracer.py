"""torch.fx tracing specialised to one example input.

Plain symbolic tracing fails on ordinary Python in `forward` (`if x.dim() == 2:`).
This tracer runs every op on the real example while it records it, so shape
queries and conditions get their concrete values and the graph is the path the
example takes (enough for dependency analysis, which only needs that path; the
model itself is never replaced by the traced graph).
"""
from __future__ import annotations

import torch
import torch.fx as fx
from torch import nn

from netshrink.structure.blocks import is_opaque_block


class _ConcreteProxy(fx.Proxy):
    """A proxy that knows its value, so Python control flow can look at it."""

    def _value(self):
        return self.tracer.values[self.node]

    def __bool__(self):
        return bool(self._value())

    def __int__(self):
        return int(self._value())

    def __index__(self):
        return int(self._value())

    def __len__(self):
        return len(self._value())

    def __iter__(self):
        v = self._value()
        if isinstance(v, torch.Tensor):
            return super().__iter__()
        return iter([self[i] for i in range(len(v))])


class ConcreteTracer(fx.Tracer):
    def __init__(self, example: tuple):
        super().__init__()
        self.example = list(example)
        self.values: dict[fx.Node, object] = {}
        self._computing = False  # while an op runs on real values, the tracer's patches step aside

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        if self._computing:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def call_module(self, m, forward, args, kwargs):
        if self._computing:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return is_opaque_block(m) or super().is_leaf_module(m, qualname)

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ConcreteProxy(node, self)

    def _real(self, a):
        return fx.node.map_aggregate(a, lambda x: self.values[x.node] if isinstance(x, fx.Proxy) else x)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, *rest, **kw):
        value = None
        if kind == "placeholder":
            value = self.example.pop(0) if self.example else (args[0] if args else None)
        elif kind == "get_attr":
            value = self.root
            for part in target.split("."):
                value = getattr(value, part)
        elif kind in ("call_function", "call_method", "call_module"):
            ra, rk = self._real(args), self._real(kwargs)
            self._computing = True
            try:
                value = self._run(kind, target, ra, rk)
            finally:
                self._computing = False
        p = super().create_proxy(kind, target, args, kwargs, name, type_expr, *rest, **kw)
        self.values[p.node] = value
        return p

    def _run(self, kind, target, ra, rk):
        with torch.no_grad():
            if kind == "call_function":
                return target(*ra, **rk)
            if kind == "call_method":
                return getattr(ra[0], target)(*ra[1:], **rk)
            return self.root.get_submodule(target)(*ra, **rk)


def trace(model: nn.Module, example: tuple) -> fx.GraphModule:
    """The graph `model` runs on `example` (eval mode, no grad)."""
    was = model.training
    model.eval()
    try:
        graph = ConcreteTracer(example).trace(model)
    finally:
        model.train(was)
    return fx.GraphModule(model, graph)
