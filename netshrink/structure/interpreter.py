"""Runs a traced graph on the example and moves channel labels node by node.

`LabelInterpreter` runs the fx graph on a real example, so every rule sees the actual
tensors (their shapes) next to its operands' labels. A label is a `Label` (units
along one dim), `PINNED` (every unit of this tensor is pinned: model inputs,
constants, outputs of opaque blocks), None (not a tensor) or a tuple of labels.
The rules come from the tables in rules.py; this class is the `ctx` they get.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from netshrink.errors import NetshrinkError
from netshrink.structure import rules
from netshrink.structure.groups import Units
from netshrink.structure.labels import PINNED, Label, has_label, holds_tensors


class LabelInterpreter(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, units: Units):
        super().__init__(gm)
        self.units = units
        self.labels: dict[fx.Node, object] = {}
        self.producer_dims: dict[str, tuple[int, list[list[int]]]] = {}
        self.mods = dict(gm.named_modules())
        self.attention_ok: dict[str, bool] = {}  # attention module -> its weights output is never read

    # -- what rules use ------------------------------------------------------------------
    def fail(self, n: fx.Node, why: str):
        where = n.target if n.op == "call_module" else None
        if where is None:
            stack = n.meta.get("nn_module_stack") or {}
            where = (list(stack.values())[-1][0] if stack and isinstance(list(stack.values())[-1], tuple)
                     else (list(stack.keys())[-1] if stack else "(top level)"))
        where = repr(where) if where else "(top level)"
        raise NetshrinkError(f"structure: cannot analyse op {rules.op_name(n)!r} (node {n.name}) in module "
                             f"{where}: {why}")

    def labelled(self, a) -> bool:
        """Does any node in `a` (nested lists / dicts) carry channel labels?"""
        if isinstance(a, fx.Node):
            return has_label(self.labels.get(a))
        if isinstance(a, (tuple, list)):
            return any(self.labelled(x) for x in a)
        if isinstance(a, dict):
            return any(self.labelled(x) for x in a.values())
        return False

    def lab(self, a):
        """The label of argument `a` (None for a constant)."""
        return self.labels.get(a) if isinstance(a, fx.Node) else None

    def value(self, a):
        """The value of argument `a` on the example."""
        return self.env.get(a) if isinstance(a, fx.Node) else a

    def pin(self, label) -> None:
        if isinstance(label, Label):
            self.units.pin(label.units)
        elif isinstance(label, tuple):
            for x in label:
                self.pin(x)

    def pin_all(self, args) -> None:
        if isinstance(args, fx.Node):
            self.pin(self.labels.get(args))
        elif isinstance(args, (tuple, list)):
            for a in args:
                self.pin_all(a)
        elif isinstance(args, dict):
            for a in args.values():
                self.pin_all(a)

    def full(self, label, val: torch.Tensor, dim: int) -> Label:
        """The label along `dim`, creating pinned units for PINNED / unlabelled tensors."""
        if isinstance(label, Label):
            return label
        return Label(self.units.new(val.shape[dim], pinned=True), dim)

    # -- the interpreter -----------------------------------------------------------------
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

    def module_rule(self, n: fx.Node, m, val, name: str | None = None):
        rule = rules.module_rule(m)
        if rule is None:
            self.fail(n, f"no dependency rule for module type {type(m).__name__}")
        return rule(self, n, m, name or n.target, val)

    def function_rule(self, n: fx.Node, val):
        if not self.labelled(list(n.args) + list(n.kwargs.values())):
            # no prunable channels flow in (a mask built with torch.full, aten.zeros for an LSTM's state):
            # the result's units are new and pinned, nothing is coupled
            return PINNED if holds_tensors(val) else None
        rule = rules.op_rule(n)
        if not isinstance(val, torch.Tensor) and rules.op_name(n) != "getitem":
            if not (isinstance(val, (tuple, list)) and any(isinstance(v, torch.Tensor) for v in val)):
                return None  # sizes, shapes, python numbers
            if rule is None:
                self.fail(n, "op returns several tensors")
        if rule is None:
            self.fail(n, "no dependency rule for this op")
        return rule(self, n, val)
