"""The torch.export fallback: dependency analysis on an ATen graph.

When torch.fx cannot trace a model (Python that a proxy cannot answer:
`torch.finfo(x.dtype)`, iterating over a tensor, ...) or its graph takes another path
than the model (`isinstance(x, torch.Tensor)` is False for a proxy), the model is
exported with `torch.export.export(model, args, strict=False)`. `ep.module()` gives
an fx graph of ATen ops in which parameters are `get_attr` nodes named by their
module path ("stages.0.conv1.weight") and every node carries `nn_module_stack`.

`AtenLabelInterpreter` runs that graph with the same label rules as the fx one:
- an op that takes a module's own parameter (aten.linear / conv / batch_norm /
  embedding / lstm / gru) is that module's rule, the module found from the
  parameter's name (a linear whose weight is not an nn.Linear's weight is refused);
- every op inside an opaque block (nn.TransformerEncoderLayer, nn.MultiheadAttention,
  Hugging Face layers; found from `nn_module_stack`) pins its operands, as the block
  as a whole does in the fx graph;
- an op none of whose operands carries prunable channels (aten.zeros for an LSTM's
  initial state, aten.arange ...) makes pinned units;
- other ops use the rule table of the fx graph by their name (aten.relu.default ->
  "relu"; ATen-only spellings such as native_layer_norm or _to_copy are in it too).
Export specialises every size to the example, so a reshape that merges the channel
dim with others must use -1 or flatten (a written size cannot be told from a computed
one and is refused, never guessed). Data-dependent control flow (`if x.sum() > 0`)
is something torch.export cannot trace; fx's concrete tracer handles it.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings

import torch
import torch.fx as fx
import torch.fx._pytree as fx_pytree
from torch import nn

from netshrink.structure.blocks import MHA_TYPES, is_opaque_block, layer_attention
from netshrink.structure.interpreter import LabelInterpreter
from netshrink.structure.labels import PINNED, holds_tensors
from netshrink.structure.rules import op_name

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
# op -> (module types, parameter names it may take, index of that parameter in the op's args)
_MODULE_OPS = {
    "linear": (nn.Linear, ("weight",), 1),
    "conv1d": (_CONV, ("weight",), 1), "conv2d": (_CONV, ("weight",), 1), "conv3d": (_CONV, ("weight",), 1),
    "convolution": (_CONV, ("weight",), 1),
    "batch_norm": (_BN, ("weight", "running_mean"), 1),
    "_native_batch_norm_legit_no_training": (_BN, ("weight", "running_mean"), 1),
    "embedding": (nn.Embedding, ("weight",), 0),
    "lstm": (nn.LSTM, ("weight_ih_l0",), 2),
    "gru": (nn.GRU, ("weight_ih_l0",), 2),
}
_MOVES = {"view", "reshape", "_unsafe_view", "transpose", "permute", "contiguous", "clone", "alias", "squeeze",
          "unsqueeze"}


def export_graph(model: nn.Module, args: tuple, kwargs: dict | None = None) -> tuple[fx.GraphModule, list]:
    """The ATen graph of `model(*args, **kwargs)` (eval mode), parameters as get_attr
    nodes, and the values its placeholders take (the inputs, flattened)."""
    was = model.training
    model.eval()
    quiet = [logging.getLogger(n) for n in ("torch.fx.experimental.symbolic_shapes", "torch.export",
                                            "torch._export", "torch._dynamo")]
    levels = [lg.level for lg in quiet]
    try:
        for lg in quiet:  # a failed export logs the whole graph; the NetshrinkError says why in one line
            lg.setLevel(logging.CRITICAL)
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):  # and prints it
            warnings.simplefilter("ignore")
            ep = torch.export.export(model, args, kwargs=kwargs or None, strict=False)
            flat = fx_pytree.tree_flatten_spec((args, kwargs or {}), ep.call_spec.in_spec)
            return ep.module(), flat
    finally:
        for lg, lv in zip(quiet, levels):
            lg.setLevel(lv)
        model.train(was)


def _stack(n: fx.Node) -> list[str]:
    """Module paths of the node, outermost first."""
    st = n.meta.get("nn_module_stack") or {}
    return [v[0] for v in st.values() if isinstance(v, tuple) and isinstance(v[0], str)]


class AtenLabelInterpreter(LabelInterpreter):
    def __init__(self, gm: fx.GraphModule, units, model: nn.Module):
        super().__init__(gm, units)
        self.model_mods = dict(model.named_modules())
        inside = layer_attention(model)
        for path, m in self.model_mods.items():
            if isinstance(m, MHA_TYPES) and path not in inside:
                ok = self._attention_weights_unused(path)
                if ok is not None:
                    self.attention_ok[path] = ok

    # -- standalone attention: is only its attention output (out_proj) read outside? ------
    def _attention_weights_unused(self, path: str) -> bool | None:
        nodes = [n for n in self.graph.nodes if path in _stack(n)]
        if not nodes:
            return None  # not called
        inside = set(nodes)
        leaving = [n for n in nodes if any(u not in inside for u in n.users)]
        return bool(leaving) and all(self._from_out_proj(n, path) for n in leaving)

    @staticmethod
    def _from_out_proj(n: fx.Node, path: str) -> bool:
        while n.op == "call_function" and op_name(n) in _MOVES and isinstance(n.args[0], fx.Node):
            n = n.args[0]
        w = n.args[1] if n.op == "call_function" and op_name(n) == "linear" and len(n.args) > 1 else None
        return isinstance(w, fx.Node) and w.op == "get_attr" and w.target == f"{path}.out_proj.weight"

    # -- the interpreter ---------------------------------------------------------------
    def _opaque(self, n: fx.Node) -> str | None:
        for p in _stack(n):
            m = self.model_mods.get(p)
            if m is not None and is_opaque_block(m):
                return p
        return None

    def run_node(self, n: fx.Node):
        if n.op in ("get_attr", "call_module"):  # parameters; torch.export's input guards
            val = fx.Interpreter.run_node(self, n)
            self.labels[n] = PINNED if isinstance(val, torch.Tensor) else None
            return val
        if n.op != "call_function":
            return super().run_node(n)
        val = fx.Interpreter.run_node(self, n)
        if self._opaque(n) is not None:  # inside a block analysed by rule: as the block, pinned
            self.pin_all(list(n.args) + list(n.kwargs.values()))
            self.labels[n] = PINNED if holds_tensors(val) else None
        else:
            self.labels[n] = self.aten_rule(n, val)
        return val

    def aten_rule(self, n: fx.Node, val):
        op = op_name(n)
        if op in _MODULE_OPS:
            return self.module_op(n, op, val)
        return self.function_rule(n, val)

    def module_op(self, n: fx.Node, op: str, val):
        types, params, at = _MODULE_OPS[op]
        w = n.args[at] if len(n.args) > at else None
        if op in ("lstm", "gru"):
            w = w[0] if isinstance(w, (list, tuple)) and w else None
        if op.endswith("batch_norm") and w is None and isinstance(n.args[3], fx.Node):
            w = n.args[3]  # affine=False: the running mean names the module
        fqn = w.target if isinstance(w, fx.Node) and w.op == "get_attr" else None
        if fqn is None:
            self.fail(n, f"aten.{op} whose weight is computed, not a module's parameter")
        mod, _, pname = fqn.rpartition(".")
        m = self.model_mods.get(mod)
        if not isinstance(m, types) or pname not in params:
            self.fail(n, f"aten.{op} on {fqn!r}, which is not the {params[0]} of a "
                         f"{'/'.join(t.__name__ for t in (types if isinstance(types, tuple) else (types,)))}")
        r = self.module_rule(n, m, val, name=mod)
        if op == "lstm":  # the module gives (out, (h, c)); aten.lstm gives (out, h, c)
            out, (h, c) = r
            return (out, h, c)
        if op == "_native_batch_norm_legit_no_training":
            return (r, None, None)
        return r
