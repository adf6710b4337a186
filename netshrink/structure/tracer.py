"""torch.fx tracing specialised to one example input.

Plain symbolic tracing fails on ordinary Python in `forward` (`if x.dim() == 2:`).
This tracer runs every op on the real example while it records it, so shape
queries and conditions get their concrete values and the graph is the path the
example takes (enough for dependency analysis, which only needs that path; the
model itself is never replaced by the traced graph).

The example's positional and keyword inputs become the graph's placeholders, in
that order (`example_inputs`); every other parameter of `forward` keeps its Python
default (`attention_mask=None` stays None, so `if attention_mask is None:` takes the
model's own path).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.fx as fx
from torch import nn

from netshrink.core.batches import Inputs
from netshrink.structure.rules import is_rule_leaf


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
    def __init__(self, args: tuple, kwargs: dict):
        super().__init__()
        self.args, self.kwargs = tuple(args), dict(kwargs)
        self.example = list(args) + list(kwargs.values())  # the placeholders' values, in order
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
        return is_rule_leaf(m) or super().is_leaf_module(m, qualname)

    def create_args_for_root(self, root_fn, is_module, concrete_args=None):
        """Placeholders for the example's inputs only; forward's other parameters keep their defaults."""
        pos = [self.create_proxy("placeholder", f"input_{i}", (), {}) for i in range(len(self.args))]
        kw = {k: self.create_proxy("placeholder", k, (), {}) for k in self.kwargs}
        return (lambda root: root_fn(root, *pos, **kw)), [self.root]

    def proxy(self, node: fx.Node) -> fx.Proxy:
        return _ConcreteProxy(node, self)

    def _real(self, a):
        return fx.node.map_aggregate(a, lambda x: self.values[x.node] if isinstance(x, fx.Proxy) else x)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, *rest, **kw):
        value = None
        if kind == "placeholder":
            value = self.example.pop(0) if self.example else (args[0] if args else None)
        elif kind == "get_attr":
            self._computing = True  # fx patches module __getattr__: reading the real tensor must not trace
            try:
                value = self.root
                for part in target.split("."):
                    value = getattr(value, part)
            finally:
                self._computing = False
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


def example_inputs(example) -> Inputs:
    """The (positional, keyword) inputs of an example: the batch adapter's Inputs, a
    tensor, a tuple of positional inputs, or a dict of keyword inputs (a Hugging Face
    batch: input_ids, attention_mask ...)."""
    if isinstance(example, Inputs):
        return example
    if isinstance(example, Mapping):
        return Inputs((), dict(example))
    if isinstance(example, tuple):
        return Inputs(example, {})
    return Inputs((example,), {})


def placeholder_values(args: tuple, kwargs: dict) -> list:
    """What the traced graph's placeholders take, in order (see ConcreteTracer)."""
    return list(args) + list(kwargs.values())


def trace(model: nn.Module, args: tuple, kwargs: dict | None = None) -> fx.GraphModule:
    """The graph `model` runs on `model(*args, **kwargs)` (eval mode, no grad)."""
    was = model.training
    model.eval()
    try:
        graph = ConcreteTracer(args, kwargs or {}).trace(model)
    finally:
        model.train(was)
    return fx.GraphModule(model, graph)
