"""Real `transformers` architectures at toy size: each built from a tiny config (random
weights, fixed seed, nothing downloaded) with an example batch as a dict of tensors,
the way a user's Hugging Face model is called (`model(**batch)`).

    arch = ARCHS["bert"]
    model, batch = arch.build()          # BertForSequenceClassification, {"input_ids": (2, 8), ...}
    logits = model(**batch).logits       # (2, num_labels)

The table covers encoders, decoders, encoder-decoders, vision and audio models; the
architecture test and `netshrink bench architectures` run every compression pipeline
on each of them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

# hidden 32, 2 layers, 2-4 heads, vocab 99: the smallest sizes every family accepts
_TEXT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
             max_position_embeddings=64)
_BATCH, _SEQ = 2, 8


@dataclass(frozen=True)
class Arch:
    """One architecture: its `transformers` model type, the Auto class its head comes
    from, the config fields that make it tiny, and the inputs it takes."""

    name: str
    family: str            # encoder, decoder, encoder-decoder, vision, audio
    model_type: str        # transformers' config model_type
    auto: str              # transformers Auto class name
    config: dict = field(default_factory=dict)
    inputs: str = "text"   # text, seq2seq, image, audio, features

    def build(self, seed: int = 0):
        """(model in eval mode, example batch dict); same seed -> same weights and batch."""
        import transformers

        cfg = transformers.AutoConfig.for_model(self.model_type, **self.config)
        torch.manual_seed(seed)
        model = getattr(transformers, self.auto).from_config(cfg, attn_implementation="eager")
        return model.eval(), self.batch(cfg, seed=seed)

    def batch(self, cfg, seed: int = 0, n: int = _BATCH) -> dict:
        g = torch.Generator().manual_seed(seed)
        if self.inputs == "text":
            return {"input_ids": torch.randint(4, cfg.vocab_size, (n, _SEQ), generator=g),
                    "attention_mask": torch.ones(n, _SEQ, dtype=torch.long)}
        if self.inputs == "seq2seq":
            return {"input_ids": torch.randint(4, cfg.vocab_size, (n, _SEQ), generator=g),
                    "attention_mask": torch.ones(n, _SEQ, dtype=torch.long),
                    "decoder_input_ids": torch.randint(4, cfg.vocab_size, (n, _SEQ // 2), generator=g)}
        if self.inputs == "image":
            size, ch = cfg.image_size if hasattr(cfg, "image_size") else 32, getattr(cfg, "num_channels", 3)
            return {"pixel_values": torch.randn(n, ch, size, size, generator=g)}
        if self.inputs == "audio":
            return {"input_values": torch.randn(n, 800, generator=g)}
        if self.inputs == "features":  # log-mel features (Whisper): (N, mel bins, 2 * max source positions)
            return {"input_features": torch.randn(n, cfg.num_mel_bins, 2 * cfg.max_source_positions, generator=g)}
        raise ValueError(self.inputs)


def _enc(name, model_type, **kw):
    return Arch(name, "encoder", model_type, "AutoModelForSequenceClassification", {**_TEXT, **kw})


def _dec(name, model_type, **kw):
    return Arch(name, "decoder", model_type, "AutoModelForCausalLM", {**_TEXT, **kw})


def _s2s(name, model_type, **kw):
    return Arch(name, "encoder-decoder", model_type, "AutoModelForSeq2SeqLM", kw, inputs="seq2seq")


_BART = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
             pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
_VIT = dict(image_size=32, patch_size=8, num_channels=3, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=64, num_labels=3)
_WAV2VEC = dict(vocab_size=32, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2, num_labels=3, mask_time_prob=0.0)

ARCH_LIST = [
    # encoders: sequence classification heads
    _enc("bert", "bert"),
    _enc("roberta", "roberta", pad_token_id=1),
    _enc("distilbert", "distilbert", dim=32, n_layers=2, n_heads=4, hidden_dim=64),
    _enc("albert", "albert", embedding_size=16),
    _enc("electra", "electra", embedding_size=16),
    _enc("deberta_v2", "deberta-v2"),
    _enc("mpnet", "mpnet"),
    # decoders: causal LM heads
    _dec("gpt2", "gpt2", n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=0, eos_token_id=0),
    _dec("gpt_neo", "gpt_neo", num_layers=2, num_heads=4, attention_types=[[["global", "local"], 1]],
         window_size=8),
    _dec("opt", "opt", ffn_dim=64, word_embed_proj_dim=32, pad_token_id=1),
    _dec("llama", "llama", num_key_value_heads=2),
    _dec("mistral", "mistral", num_key_value_heads=2, sliding_window=None),
    _dec("qwen2", "qwen2", num_key_value_heads=2),
    _dec("phi", "phi"),
    _dec("bloom", "bloom", n_layer=2, n_head=4),
    _dec("falcon", "falcon", new_decoder_architecture=False, multi_query=True),
    # encoder-decoders: seq2seq LM heads
    _s2s("t5", "t5", vocab_size=99, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
         decoder_start_token_id=0),
    _s2s("bart", "bart", **_BART),
    _s2s("marian", "marian", **_BART),
    # vision: image classification heads
    Arch("vit", "vision", "vit", "AutoModelForImageClassification", _VIT, inputs="image"),
    Arch("deit", "vision", "deit", "AutoModelForImageClassification",
         {**_VIT, "architectures": ["DeiTForImageClassification"]}, inputs="image"),
    Arch("swin", "vision", "swin", "AutoModelForImageClassification",
         dict(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4,
              num_labels=3), inputs="image"),
    Arch("convnext", "vision", "convnext", "AutoModelForImageClassification",
         dict(image_size=32, num_channels=3, num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], num_labels=3),
         inputs="image"),
    Arch("resnet", "vision", "resnet", "AutoModelForImageClassification",
         dict(image_size=32, num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1],
              layer_type="basic", num_labels=3), inputs="image"),
    # audio
    Arch("wav2vec2", "audio", "wav2vec2", "AutoModelForAudioClassification", _WAV2VEC, inputs="audio"),
    Arch("hubert", "audio", "hubert", "AutoModelForAudioClassification", _WAV2VEC, inputs="audio"),
    Arch("whisper", "audio", "whisper", "AutoModelForAudioClassification",
         dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
              decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
              max_source_positions=16, max_target_positions=16, num_labels=3, pad_token_id=1,
              bos_token_id=0, eos_token_id=0, decoder_start_token_id=0), inputs="features"),
]
ARCHS = {a.name: a for a in ARCH_LIST}
