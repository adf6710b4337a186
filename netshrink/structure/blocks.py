"""Transformer blocks analysed by rule: attention heads and FFN neurons.

A block is opaque to the tracer (its hidden size, the residual stream, is never
pruned), and its internal groups are *closed*: every slot of a head or an FFN
neuron lies inside the block, so removing one is valid whatever the rest of the
model does with the block's output.

- Hugging Face BERT-family layers (BERT, RoBERTa, ELECTRA... anything with
  `attention.self.{query,key,value}` + `attention.output.dense` and
  `intermediate.dense` + `output.dense`): head h owns rows h*d ... h*d+d-1 of
  query/key/value (weights (all_head, hidden), biases) and the same columns of
  attention.output.dense (hidden, all_head); FFN neuron j owns row j of
  intermediate.dense and column j of output.dense.
- `nn.TransformerEncoderLayer`: FFN neurons (linear1 rows, linear2 columns).
  Its `nn.MultiheadAttention` keeps its heads: torch's module ties head_dim to
  embed_dim / num_heads, so a head cannot be removed without replacing the module.
"""
from __future__ import annotations

from torch import nn


def _is_hf_self_attention(m: nn.Module) -> bool:
    return all(isinstance(getattr(m, a, None), nn.Linear) for a in ("query", "key", "value")) \
        and isinstance(getattr(m, "num_attention_heads", None), int) \
        and isinstance(getattr(m, "attention_head_size", None), int)


def _is_hf_layer(m: nn.Module) -> bool:
    attn = getattr(m, "attention", None)
    return attn is not None and _is_hf_self_attention(getattr(attn, "self", None) or nn.Module()) \
        and isinstance(getattr(getattr(attn, "output", None), "dense", None), nn.Linear) \
        and isinstance(getattr(getattr(m, "intermediate", None), "dense", None), nn.Linear) \
        and isinstance(getattr(getattr(m, "output", None), "dense", None), nn.Linear)


def is_opaque_block(m: nn.Module) -> bool:
    """Blocks the tracer keeps whole (inputs and outputs pinned)."""
    return isinstance(m, (nn.MultiheadAttention, nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)) \
        or _is_hf_layer(m)


def _ffn(name: str, up: str, up_m: nn.Linear, down: str):
    from netshrink.structure.graph import Component, Group
    comps = []
    for j in range(up_m.out_features):
        slots = [((up, "weight", 0, j), "out"), ((down, "weight", 1, j), "in")]
        if up_m.bias is not None:
            slots.append(((up, "bias", 0, j), "out"))
        comps.append(Component(slots=slots, producers=[(up, j)]))
    return Group(name=f"{name}.ffn" if name else "ffn", kind="ffn", components=comps)


def _heads(name: str, attn: nn.Module):
    from netshrink.structure.graph import Component, Group
    sa, out = attn.self, f"{name}.attention.output.dense"
    d = attn.self.attention_head_size
    comps = []
    for h in range(sa.query.out_features // d):
        rows = range(h * d, (h + 1) * d)
        slots = []
        for p in ("query", "key", "value"):
            lin = getattr(sa, p)
            slots += [((f"{name}.attention.self.{p}", "weight", 0, r), "out") for r in rows]
            if lin.bias is not None:
                slots += [((f"{name}.attention.self.{p}", "bias", 0, r), "out") for r in rows]
        slots += [((out, "weight", 1, r), "in") for r in rows]
        comps.append(Component(slots=slots, producers=[(f"{name}.attention.self.value", h)]))
    return Group(name=f"{name}.heads", kind="heads", components=comps)


def block_groups(model: nn.Module) -> list:
    """The closed groups (heads, FFN neurons) of every recognised block in `model`."""
    groups = []
    for name, m in model.named_modules():
        p = f"{name}." if name else ""
        if _is_hf_layer(m):
            groups.append(_heads(name, m.attention))
            groups.append(_ffn(name, f"{p}intermediate.dense", m.intermediate.dense, f"{p}output.dense"))
        elif isinstance(m, nn.TransformerEncoderLayer):
            groups.append(_ffn(name, f"{p}linear1", m.linear1, f"{p}linear2"))
    return groups


def block_producer_dims(model: nn.Module) -> dict:
    """Where each closed group's producer writes its units (for activation scores):
    module -> (output dim, output positions of each unit)."""
    out = {}
    for name, m in model.named_modules():
        p = f"{name}." if name else ""
        if _is_hf_layer(m):
            d = m.attention.self.attention_head_size
            n = m.attention.self.value.out_features // d
            out[f"{p}attention.self.value"] = (-1, [list(range(h * d, (h + 1) * d)) for h in range(n)])
            out[f"{p}intermediate.dense"] = (-1, [[j] for j in range(m.intermediate.dense.out_features)])
        elif isinstance(m, nn.TransformerEncoderLayer):
            out[f"{p}linear1"] = (-1, [[j] for j in range(m.linear1.out_features)])
    return out


def fix_attributes(model: nn.Module) -> None:
    """After a shrink: the scalar attributes HF attention reads in forward."""
    for m in model.modules():
        if _is_hf_self_attention(m):
            m.all_head_size = m.query.out_features
            m.num_attention_heads = m.all_head_size // m.attention_head_size
