"""A BERT-family encoder classifier built from a `transformers` config (random weights,
nothing downloaded), as a zoo model whose heads and FFN neurons structured pruning
removes.

    from netshrink.zoo.bert import register_bert_tiny
    register_bert_tiny()                                   # explicit, once per process
    model = ns.zoo.models.create("bert_tiny", num_layers=2)
    logits = model(model.example_input(4))                 # (4, num_classes)
"""
from __future__ import annotations

import torch
from torch import nn

from netshrink.zoo import models


class BertClassifier(nn.Module):
    """transformers.BertModel (no pooler) + a linear head on the [CLS] position.
    Input: token ids (N, T) int64; output: logits (N, num_classes)."""

    def __init__(self, vocab_size: int = 512, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                 intermediate_size: int = 128, max_len: int = 32, num_classes: int = 2):
        super().__init__()
        from transformers import BertConfig, BertModel

        cfg = BertConfig(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=num_layers,
                         num_attention_heads=num_heads, intermediate_size=intermediate_size,
                         max_position_embeddings=max_len, hidden_dropout_prob=0.0,
                         attention_probs_dropout_prob=0.0)
        cfg._attn_implementation = "eager"  # plain matmul + softmax: traceable and exportable
        self.max_len, self.vocab_size = max_len, vocab_size
        self.bert = BertModel(cfg, add_pooling_layer=False)
        self.classifier = nn.Linear(hidden_size, num_classes)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        h = self.bert(input_ids=input_ids).last_hidden_state  # (N, T, hidden)
        return self.classifier(h[:, 0])

    def example_input(self, batch: int = 2, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return torch.randint(0, self.vocab_size, (batch, self.max_len), generator=g)


def register_bert_tiny() -> None:
    """Make "bert_tiny" buildable by name (and BERT artifacts loadable)."""
    models.register("bert_tiny", BertClassifier)
