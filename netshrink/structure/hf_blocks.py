"""Hugging Face `transformers` layers analysed by rule: attention heads and FFN neurons
of the families whose submodules sit at known relative paths (BERT-style layers are
in blocks.py; this table adds DistilBERT, ViT, LLaMA / Mistral / Qwen2, Phi, OPT,
BART / Marian / Whisper, wav2vec 2.0 / HuBERT, GPT-2 / GPT-Neo, Falcon / Bloom, T5, ALBERT).

Only modules defined by `transformers` match (a user's module with `fc1` / `fc2` is
traced as usual). A matched module is opaque to the tracer; its groups are closed:
- FFN neuron j: row j of every up projection (gate and up of a gated MLP) and their
  biases, column j of the down projection (GPT-2's Conv1D stores (in, out): the dims
  swap);
- attention head h (a group of `num_heads / num_kv_heads` query heads with their
  key / value head under grouped-query attention): rows h*d ... of q, k, v and those
  columns of the output projection. Heads are offered only where the family's
  forward reads the head count from the tensors or from attributes netshrink
  updates (`num_heads`, `n_heads`, `num_attention_heads`, `num_key_value_heads`),
  never where a relative-position table is indexed by head (T5, MPNet, Swin,
  DeBERTa) or q/k/v are fused (GPT-2's c_attn, Falcon, Bloom): there only the FFN.
"""
from __future__ import annotations

from torch import nn

from netshrink.structure.groups import Component, Group

# (attention module, relative to the layer; q, k, v, o relative to the attention module)
ATTENTION = [
    ("attention", ("q_lin", "k_lin", "v_lin", "out_lin")),          # DistilBERT
    ("attention", ("q_proj", "k_proj", "v_proj", "o_proj")),        # ViT, DeiT
    ("attention", ("q_proj", "k_proj", "v_proj", "out_proj")),      # wav2vec 2.0, HuBERT
    ("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")),        # LLaMA, Mistral, Qwen2
    ("self_attn", ("q_proj", "k_proj", "v_proj", "out_proj")),      # OPT, BART, Marian, Whisper
    ("encoder_attn", ("q_proj", "k_proj", "v_proj", "out_proj")),   # their decoders' cross-attention
    ("self_attn", ("q_proj", "k_proj", "v_proj", "dense")),         # Phi
    ("attn.attention", ("q_proj", "k_proj", "v_proj", "out_proj")),  # GPT-Neo
]
# (up projections, down projection), relative to the layer
FFN = [
    (("ffn.lin1",), "ffn.lin2"),                            # DistilBERT
    (("mlp.fc1",), "mlp.fc2"),                              # ViT, Phi, Swin
    (("fc1",), "fc2"),                                      # OPT, BART, Marian, Whisper
    (("mlp.gate_proj", "mlp.up_proj"), "mlp.down_proj"),    # LLaMA, Mistral, Qwen2
    (("mlp.c_fc",), "mlp.c_proj"),                          # GPT-2 (Conv1D), GPT-Neo
    (("mlp.dense_h_to_4h",), "mlp.dense_4h_to_h"),          # Falcon, Bloom
    (("DenseReluDense.wi",), "DenseReluDense.wo"),          # T5 (its feed-forward sublayer)
    (("ffn",), "ffn_output"),                               # ALBERT
    (("feed_forward.intermediate_dense",), "feed_forward.output_dense"),  # wav2vec 2.0, HuBERT
    (("intermediate.dense",), "output.dense"),              # MPNet, DeBERTa (BERT itself: blocks.py)
]
_HEAD_COUNTS = ("num_heads", "n_heads", "num_attention_heads")
_HEAD_DIMS = ("head_dim", "attention_head_size")


def _get(m: nn.Module, rel: str):
    for part in rel.split("."):
        m = getattr(m, part, None) if isinstance(m, nn.Module) else None
    return m


def _is_proj(m) -> bool:
    """nn.Linear, or transformers' Conv1D (weight (in, out), attribute nf)."""
    return isinstance(m, nn.Linear) or (type(m).__name__ == "Conv1D" and hasattr(m, "nf"))


def _from_transformers(m: nn.Module) -> bool:
    return type(m).__module__.startswith("transformers.")


def ffn_of(layer: nn.Module):
    if not _from_transformers(layer):
        return None
    for ups, down in FFN:
        mods = [_get(layer, u) for u in ups] + [_get(layer, down)]
        if all(_is_proj(m) for m in mods):
            return ups, down
    return None


def _head_dim(attn: nn.Module) -> int | None:
    for a in _HEAD_DIMS:
        d = getattr(attn, a, None)
        if isinstance(d, int) and d > 0:
            return d
    return None


def attentions_of(layer: nn.Module) -> list[tuple[str, tuple[str, str, str, str], int]]:
    """(attention path relative to the layer, (q, k, v, o), head dim) of each attention module."""
    if not _from_transformers(layer):
        return []
    out = []
    for prefix, names in ATTENTION:
        attn = _get(layer, prefix)
        if attn is None or not all(isinstance(_get(attn, n), nn.Linear) for n in names):
            continue
        d = _head_dim(attn)
        q, k, v, _ = (_get(attn, n) for n in names)
        if d and q.out_features % d == 0 and k.out_features % d == 0 and k.out_features == v.out_features \
                and (q.out_features // d) % (k.out_features // d) == 0:
            out.append((prefix, names, d))
    return out


def is_hf_block(m: nn.Module) -> bool:
    return ffn_of(m) is not None or bool(attentions_of(m))


def _p(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def _ffn_group(name: str, layer: nn.Module, ups, down) -> Group:
    comps = []
    width = _out_width(_get(layer, ups[0]))
    for j in range(width):
        slots = []
        for u in ups:
            m = _get(layer, u)
            conv1d = not isinstance(m, nn.Linear)
            slots.append(((_p(name, u), "weight", 1 if conv1d else 0, j), "out"))
            if m.bias is not None:
                slots.append(((_p(name, u), "bias", 0, j), "out"))
        dm = _get(layer, down)
        slots.append(((_p(name, down), "weight", 0 if not isinstance(dm, nn.Linear) else 1, j), "in"))
        comps.append(Component(slots=slots, producers=[(_p(name, ups[-1]), j)]))
    return Group(name=_p(name, "ffn"), kind="ffn", components=comps)


def _out_width(m) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.nf


def _head_group(name: str, layer: nn.Module, prefix: str, names, d: int) -> Group:
    attn = _get(layer, prefix)
    q, k, v, o = (_p(name, prefix, n) for n in names)
    n_q, n_kv = _get(attn, names[0]).out_features // d, _get(attn, names[1]).out_features // d
    r = n_q // n_kv  # query heads per key/value head: they go together
    comps = []
    for g in range(n_kv):
        q_rows = range(g * r * d, (g + 1) * r * d)
        kv_rows = range(g * d, (g + 1) * d)
        slots = []
        for path, rows, lin in ((q, q_rows, names[0]), (k, kv_rows, names[1]), (v, kv_rows, names[2])):
            slots += [((path, "weight", 0, i), "out") for i in rows]
            if _get(attn, lin).bias is not None:
                slots += [((path, "bias", 0, i), "out") for i in rows]
        slots += [((o, "weight", 1, i), "in") for i in q_rows]
        comps.append(Component(slots=slots, producers=[(v, g)]))
    return Group(name=_p(name, prefix, "heads"), kind="heads", components=comps)


def hf_groups(name: str, layer: nn.Module) -> list[Group]:
    groups = [_head_group(name, layer, prefix, names, d) for prefix, names, d in attentions_of(layer)]
    ffn = ffn_of(layer)
    if ffn is not None:
        groups.append(_ffn_group(name, layer, *ffn))
    return groups


def hf_producer_dims(name: str, layer: nn.Module) -> dict:
    """Where each closed group's producer writes its units (for activation scores)."""
    out = {}
    for prefix, names, d in attentions_of(layer):
        v = _get(layer, prefix + "." + names[2])
        out[_p(name, prefix, names[2])] = (-1, [list(range(g * d, (g + 1) * d)) for g in range(v.out_features // d)])
    ffn = ffn_of(layer)
    if ffn is not None:
        ups = ffn[0]
        out[_p(name, ups[-1])] = (-1, [[j] for j in range(_out_width(_get(layer, ups[-1])))])
    return out


def fix_hf_attributes(layer: nn.Module) -> None:
    """After a shrink: the head counts the family's forward reads (OPT views with num_heads)."""
    for prefix, names, d in attentions_of(layer):
        attn = _get(layer, prefix)
        n_q, n_kv = _get(attn, names[0]).out_features // d, _get(attn, names[1]).out_features // d
        for a in _HEAD_COUNTS:
            if isinstance(getattr(attn, a, None), int):
                setattr(attn, a, n_q)
        if isinstance(getattr(attn, "num_key_value_heads", None), int):
            attn.num_key_value_heads = n_kv
