"""Dead neurons: output units and input features whose weights are all zero, so
structured shrinking could remove them.

Until structured shrinking removes them physically, a model regularised by group
lasso, DropNeuron, L0 or LassoNet still computes its dead units densely; `measure`
reports them per layer so that the saving that *could* be made is visible, and the
saving actually made is not overstated.

- a dead output unit: a zero row of a Linear weight, a zero conv filter, or an
  LSTM/GRU hidden unit whose rows are zero in every gate. (Its bias, if any, makes it
  a constant, which the next layer's bias absorbs exactly.)
- a dead input feature: a zero column of a Linear weight / a zero input channel of
  a conv / a zero column of a recurrent weight.

    >>> removable_units(model)["fc1"]
    {'units': 300, 'dead_units': 120, 'inputs': 784, 'dead_inputs': 500}
"""
from __future__ import annotations

from torch import nn

from netshrink.functional.groups import RNN_GATES, dead_groups

_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LSTM, nn.GRU, nn.RNN)


def removable_units(model: nn.Module) -> dict[str, dict]:
    """{layer: {units, dead_units, inputs, dead_inputs}} for every plain Linear / Conv
    weight (layer = module name) and every LSTM/GRU weight (layer = parameter name)."""
    out = {}
    for mname, m in model.named_modules():
        if not isinstance(m, _TYPES):
            continue
        for pname, p in m.named_parameters(recurse=False):
            if not pname.startswith("weight") or p.dim() < 2:
                continue
            gates = RNN_GATES.get(type(m).__name__, 1) if isinstance(m, (nn.LSTM, nn.GRU, nn.RNN)) else 1
            key = mname if pname == "weight" else f"{mname}.{pname}" if mname else pname
            d_out = dead_groups(p, direction="out", gates=gates)
            d_in = dead_groups(p, direction="in")
            out[key] = {"units": int(d_out.numel()), "dead_units": int(d_out.sum()),
                        "inputs": int(d_in.numel()), "dead_inputs": int(d_in.sum())}
    return out


def summary(units: dict[str, dict]) -> str:
    """'fc1 120/300 units, 500/784 inputs; ...' for layers with anything removable."""
    parts = []
    for k, u in units.items():
        bits = []
        if u["dead_units"]:
            bits.append(f"{u['dead_units']}/{u['units']} units")
        if u["dead_inputs"]:
            bits.append(f"{u['dead_inputs']}/{u['inputs']} inputs")
        if bits:
            parts.append(f"{k} " + ", ".join(bits))
    return "; ".join(parts)
