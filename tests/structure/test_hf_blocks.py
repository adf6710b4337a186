"""Hugging Face decoder layers by rule (hf_blocks.py), on dict batches: zeroed heads (under
grouped-query attention: a key/value head with its query heads) and FFN neurons
(gated LLaMA MLP, OPT's fc1/fc2 with num_heads views; GPT-2's Conv1D and the other
families are in tests/architectures) are removed and
the outputs stay identical; channel_prune shrinks them where tracing fails."""
import pytest
import torch
import transformers

import netshrink as ns
from netshrink.structure import analyze, shrink

_TINY = dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=24,
             max_position_embeddings=16)
ARCHS = {
    "llama": dict(_TINY, num_key_value_heads=2),            # 2 query heads per key/value head
    "opt": dict(_TINY, ffn_dim=24, word_embed_proj_dim=16, pad_token_id=1),
}


def _build(kind):
    torch.manual_seed(0)
    cfg = transformers.AutoConfig.for_model(kind, **ARCHS[kind])
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    ids = torch.randint(3, 50, (2, 6), generator=torch.Generator().manual_seed(0))
    return model, {"input_ids": ids, "attention_mask": torch.ones(2, 6, dtype=torch.long)}


@pytest.mark.parametrize("kind", sorted(ARCHS))
def test_zeroed_heads_and_ffn_neurons_of_decoders_removed_exactly(kind):
    model, batch = _build(kind)
    g = analyze(model, batch)
    kinds = sorted(grp.kind for grp in g.groups)
    assert kinds == ["ffn", "heads"]
    with torch.no_grad():
        for grp in g.groups:
            for (mod, p, d, pos), role in grp.components[0].slots:
                if role == "out":
                    getattr(model.get_submodule(mod), p).select(d, pos).zero_()
        before = model(**batch).logits
    shrink(model, batch, graph=g)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, before, rtol=0, atol=1e-5)
    if kind == "llama":
        attn = model.model.layers[0].self_attn
        assert attn.q_proj.out_features == 8 and attn.k_proj.out_features == 4  # 2 of 4 query, 1 of 2 kv heads
        assert model.model.layers[0].mlp.up_proj.out_features == 23
    if kind == "opt":
        assert model.model.decoder.layers[0].self_attn.num_heads == 3


def test_channel_prune_on_a_decoder_it_cannot_trace_uses_the_closed_groups():
    model, batch = _build("opt")
    m = ns.create("channel_prune", sparsity=0.5, kinds=("ffn",))
    m.prepare(model, ns.core.context.PrepareContext(data=[batch]))
    assert model.model.decoder.layers[0].fc1.out_features == 12
    assert model(**batch).logits.shape == (2, 6, 50)
