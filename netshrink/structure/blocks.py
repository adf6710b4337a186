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
- `nn.TransformerEncoderLayer` / `nn.TransformerDecoderLayer`: FFN neurons (linear1
  rows, linear2 columns) and the heads of their attention modules.
- `nn.MultiheadAttention` (and netshrink's `PrunedMultiheadAttention`): head h owns
  rows h*d ... h*d+d-1 of each of q, k, v (of the packed in_proj_weight (3I, E): at
  offsets 0, I, 2I; or of q/k/v_proj_weight), the same entries of in_proj_bias and of
  bias_k / bias_v, and those columns of out_proj.weight. torch's module ties head_dim
  to embed_dim / num_heads, so removing a head replaces it by a
  `PrunedMultiheadAttention` holding the same tensors (see shrink.remove_components).
  Inside a Transformer layer its attention weights are never returned; a standalone
  one's heads are offered only when the traced graph shows that its attention weights
  (which average over the heads) are not used.
"""
from __future__ import annotations

from torch import nn

from netshrink.runtime.attention import PrunedMultiheadAttention
from netshrink.structure.groups import Component, Group
from netshrink.structure.hf_blocks import fix_hf_attributes, hf_groups, hf_producer_dims, is_hf_block

MHA_TYPES = (nn.MultiheadAttention, PrunedMultiheadAttention)
_LAYERS = (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)
_STACKS = (nn.TransformerEncoder, nn.TransformerDecoder, nn.Transformer)  # whole stacks of layers: opaque too
OPAQUE_TYPES = MHA_TYPES + _LAYERS + _STACKS


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
    return isinstance(m, OPAQUE_TYPES) or _is_hf_layer(m) or is_hf_block(m)


def _hf_blocks(model: nn.Module):
    """(path, module) of the outermost transformers layers of hf_blocks.py's table."""
    found = []
    for name, m in model.named_modules():
        if any(name.startswith(f + ".") for f, _ in found) or _is_hf_layer(m):
            continue
        if is_hf_block(m):
            found.append((name, m))
    return found


def _ffn(name: str, up: str, up_m: nn.Linear, down: str) -> Group:
    comps = []
    for j in range(up_m.out_features):
        slots = [((up, "weight", 0, j), "out"), ((down, "weight", 1, j), "in")]
        if up_m.bias is not None:
            slots.append(((up, "bias", 0, j), "out"))
        comps.append(Component(slots=slots, producers=[(up, j)]))
    return Group(name=f"{name}.ffn" if name else "ffn", kind="ffn", components=comps)


def _heads(name: str, attn: nn.Module) -> Group:
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


def _mha_rows(m: nn.Module, h: int) -> range:
    return range(h * m.head_dim, (h + 1) * m.head_dim)


def _mha_heads(path: str, m: nn.Module) -> Group:
    """The heads of an nn.MultiheadAttention / PrunedMultiheadAttention at `path`."""
    inner = m.num_heads * m.head_dim
    comps = []
    for h in range(m.num_heads):
        rows = _mha_rows(m, h)
        slots = []
        if m.in_proj_weight is not None:
            slots += [((path, "in_proj_weight", 0, k * inner + r), "out") for k in range(3) for r in rows]
        else:
            slots += [((path, p, 0, r), "out") for p in ("q_proj_weight", "k_proj_weight", "v_proj_weight")
                      for r in rows]
        if m.in_proj_bias is not None:
            slots += [((path, "in_proj_bias", 0, k * inner + r), "out") for k in range(3) for r in rows]
        if m.bias_k is not None:
            slots += [((path, p, 2, r), "out") for p in ("bias_k", "bias_v") for r in rows]
        slots += [((f"{path}.out_proj", "weight", 1, r), "in") for r in rows]
        comps.append(Component(slots=slots, producers=[(path, h)]))
    return Group(name=f"{path}.heads", kind="heads", components=comps, block=path)


def layer_attention(model: nn.Module) -> dict[str, nn.Module]:
    """Attention modules inside Transformer layers (their weights are never returned)."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(m, _LAYERS):
            for attr in ("self_attn", "multihead_attn"):
                a = getattr(m, attr, None)
                if isinstance(a, MHA_TYPES):
                    out[f"{name}.{attr}" if name else attr] = a
    return out


def block_groups(model: nn.Module, standalone_attention: set[str] | frozenset = frozenset()) -> list[Group]:
    """The closed groups (heads, FFN neurons) of every recognised block in `model`.
    standalone_attention: paths of attention modules outside Transformer layers whose
    heads may go (the trace showed their attention weights unused)."""
    groups = []
    inside = layer_attention(model)
    for name, m in model.named_modules():
        p = f"{name}." if name else ""
        if _is_hf_layer(m):
            groups.append(_heads(name, m.attention))
            groups.append(_ffn(name, f"{p}intermediate.dense", m.intermediate.dense, f"{p}output.dense"))
        elif isinstance(m, _LAYERS):
            groups.append(_ffn(name, f"{p}linear1", m.linear1, f"{p}linear2"))
        elif isinstance(m, MHA_TYPES) and m.num_heads > 1 and (name in inside or name in standalone_attention):
            groups.append(_mha_heads(name, m))
    for name, m in _hf_blocks(model):
        groups += hf_groups(name, m)
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
        elif isinstance(m, _LAYERS):
            out[f"{p}linear1"] = (-1, [[j] for j in range(m.linear1.out_features)])
        elif isinstance(m, MHA_TYPES):  # the value projection's outputs (importance computes them)
            out[name] = (-1, [list(_mha_rows(m, h)) for h in range(m.num_heads)])
    for name, m in _hf_blocks(model):
        out.update(hf_producer_dims(name, m))
    return out


def fix_attributes(model: nn.Module) -> None:
    """After a shrink: the scalar attributes HF attention reads in forward."""
    for m in model.modules():
        if _is_hf_self_attention(m):
            m.all_head_size = m.query.out_features
            m.num_attention_heads = m.all_head_size // m.attention_head_size
    for _, m in _hf_blocks(model):
        fix_hf_attributes(m)
