"""The rule tables both tracers use: op name -> op rule, module type -> module rule
(and how it is resized after a shrink); `register_rule` adds users' own, as
Torch-Pruning's customised pruners do.

    from netshrink.structure import register_rule, passthrough
    register_rule(MyGate, passthrough)                  # a leaf module: channels pass unchanged
    register_rule("mylib::scale", lambda ctx, n, val: ctx.lab(n.args[0]))   # a torch.library op

Rule signatures: op_rules.py (functions) and module_rules.py (modules).
"""
from __future__ import annotations

from typing import Callable

import torch.fx as fx
from torch import nn

from netshrink.errors import NetshrinkError
from netshrink.structure import module_rules, op_rules
from netshrink.structure.blocks import is_opaque_block

OpRule = Callable  # (ctx, node, output value) -> label
ModuleRule = Callable  # (ctx, node, module, module path, output value) -> label
Resize = Callable  # (module) -> None

OP_RULES: dict[str, OpRule] = dict(op_rules.BUILTIN)
MODULE_RULES: dict[type, ModuleRule] = dict(module_rules.BUILTIN)
RESIZERS: dict[type, Resize] = dict(module_rules.RESIZERS)
_USER_MODULES: set[type] = set()  # modules with a user's rule: leaves for torch.fx, never traced into


def register_rule(op: str | type, rule: Callable, *, resize: Callable | None = None,
                  replace: bool = False) -> None:
    """How `op` moves channel labels.

    op: a function / method / ATen op name ("cumsum", "mylib::scale" for a torch.library
        op, as both torch.fx and torch.export graphs name it), or an nn.Module subclass
        (then torch.fx keeps it a leaf, and `rule(ctx, n, m, name, val)` sees the call).
    rule: `rule(ctx, n, val)` for an op, `rule(ctx, n, m, name, val)` for a module;
        returns the output's label (see op_rules.py / module_rules.py; `passthrough`
        and `pin_channels` there cover element-wise and channel-coupling modules).
    resize: for a module whose tensors a shrink makes smaller: `resize(m)` sets its
        size attributes from them (as Linear's in/out_features).
    replace: allow replacing a rule already registered (built-in ones included).
    """
    if not callable(rule) or (resize is not None and not callable(resize)):
        raise NetshrinkError("register_rule: rule and resize must be callables")
    if isinstance(op, type) and issubclass(op, nn.Module):
        if op in MODULE_RULES and not replace:
            raise NetshrinkError(f"register_rule: {op.__name__} already has a rule (pass replace=True)")
        MODULE_RULES[op] = rule
        _USER_MODULES.add(op)
        if resize is not None:
            RESIZERS[op] = resize
        return
    if not isinstance(op, str) or not op:
        raise NetshrinkError(f"register_rule: op must be an op name or an nn.Module subclass, not {op!r}")
    if resize is not None:
        raise NetshrinkError("register_rule: resize applies to module types only")
    if op in OP_RULES and not replace:
        raise NetshrinkError(f"register_rule: op {op!r} already has a rule (pass replace=True)")
    OP_RULES[op] = rule


def op_name(n: fx.Node) -> str:
    """A call's short name: a method's name; a function's __name__; an ATen or torch.library
    op's overload packet (aten.relu.default -> "relu")."""
    if n.op == "call_method":
        return n.target
    t = n.target
    packet = getattr(t, "_overloadpacket", None)
    if packet is not None:
        return packet.__name__
    return getattr(t, "__name__", str(t))


def op_rule(n: fx.Node) -> OpRule | None:
    """The rule of a call_function / call_method node: by qualified op name first
    ("mylib::scale"), then by short name."""
    packet = getattr(n.target, "_overloadpacket", n.target) if n.op == "call_function" else None
    qualified = getattr(packet, "_qualified_op_name", None)
    if qualified and qualified in OP_RULES:
        return OP_RULES[qualified]
    return OP_RULES.get(op_name(n))


def _by_mro(table: dict, m: nn.Module):
    for cls in type(m).__mro__:
        if cls in table:
            return table[cls]
    return None


def module_rule(m: nn.Module) -> ModuleRule | None:
    rule = _by_mro(MODULE_RULES, m)
    if rule is None and is_opaque_block(m):  # Hugging Face layers, recognised by their attributes
        return module_rules.opaque
    return rule


def resizer(m: nn.Module) -> Resize | None:
    found = _by_mro(RESIZERS, m)
    if found is None and type(m).__name__ == "Conv1D" and hasattr(m, "nf"):  # transformers' GPT-2 layer
        return module_rules.resize_conv1d
    return found


def is_rule_leaf(m: nn.Module) -> bool:
    """Modules torch.fx must not trace into: blocks analysed by rule and users' own rules."""
    return is_opaque_block(m) or any(cls in _USER_MODULES for cls in type(m).__mro__)
