"""A tiny random BertModel with outlier-like input channels, for the one-shot and
structured-pruning tests."""
import torch
import transformers
from torch import nn


def outlier_bert(hidden: int = 64, intermediate: int = 128) -> transformers.BertModel:
    """Two blocks, four heads, eager attention, fixed seeds. Trained transformers have input
    channels of very different scales (outlier features); a random init has none, so the
    LayerNorms get log-normal gains."""
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=intermediate, max_position_embeddings=64)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.mul_(torch.randn(m.weight.shape, generator=g).exp())
    return model
