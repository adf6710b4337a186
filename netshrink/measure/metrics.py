"""The task metric of a report: accuracy for classification only; otherwise the user's
metric or fidelity to the reference model, each named as what it is.

`metric` (measure(..., metric=...), CLI `--metric`):
- `auto` (default): `accuracy` where the data has integer class targets and the model
  several outputs; `mse` where the targets are floats; with no targets, fidelity to the
  reference: `fidelity_top1` for logits (HF `logits`, or a 2-d output of several columns),
  `fidelity_cosine` for embeddings / hidden states, `fidelity_relative_error` for a single
  output (a regression); no reference and no targets: no metric (a note says so).
- `accuracy`, `mse`, `mae`: against the data's targets.
- `fidelity_*`: on (N, T, ...) outputs of batches with an attention_mask, over the real
  tokens only (padding left out).
- `fidelity_top1` (the model's argmax equals the reference's), `fidelity_top5` (share of
  the reference's top-5 classes in the model's top-5), `fidelity_cosine` (mean cosine of
  the outputs along the last dim), `fidelity_relative_error` (‖y − y_ref‖ / ‖y_ref‖ over
  the data), `fidelity_kl` (KL(reference ‖ model) per position, nats): against `reference`.
- a callable `metric(outputs, targets) -> float` on the concatenated main output tensors
  (targets None for unlabelled data); reported under its `__name__`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from netshrink.core.batches import as_batches
from netshrink.errors import NetshrinkError

LOWER_IS_BETTER = {"mse", "mae", "fidelity_relative_error", "fidelity_kl"}
TARGET_METRICS = ("accuracy", "mse", "mae")
FIDELITY = ("fidelity_top1", "fidelity_top5", "fidelity_cosine", "fidelity_relative_error", "fidelity_kl")
METRICS = ("auto", *TARGET_METRICS, *FIDELITY)


@dataclass(frozen=True)
class MetricValue:
    name: str
    value: float
    higher_is_better: bool

    @property
    def is_fraction(self) -> bool:
        """Shown as a percentage (accuracy, agreement)."""
        return is_fraction(self.name)


def is_fraction(name: str) -> bool:
    """Shown as a percentage (accuracy, agreement)."""
    return name in ("accuracy", "fidelity_top1", "fidelity_top5", "fidelity")


def higher_is_better(name: str, metric=None) -> bool | None:
    """Which way is better for metric `name`; for a user's callable, its own
    `higher_is_better` attribute, else None (unknown)."""
    if callable(metric):
        v = getattr(metric, "higher_is_better", None)
        return None if v is None else bool(v)
    return name not in LOWER_IS_BETTER


def is_hidden_state(model, data) -> bool:
    """True when the model returns hidden states / embeddings rather than logits (HF
    outputs with `last_hidden_state` / `pooler_output` and no `logits`), on data's first batch."""
    b = as_batches(data)
    with torch.no_grad():
        was = model.training
        model.eval()
        out = b.call(model, b.first())
        model.train(was)
    if isinstance(out, torch.Tensor):
        return False
    get = out.get if hasattr(out, "get") else (lambda k: getattr(out, k, None))
    return get("logits") is None and (get("last_hidden_state") is not None or get("pooler_output") is not None)


def choose(metric, outputs: torch.Tensor, targets, *, has_reference: bool, hidden: bool = False) -> str | None:
    """The metric name `auto` means here (None: nothing to measure against)."""
    if callable(metric):
        return getattr(metric, "__name__", "metric")
    if metric not in METRICS:
        raise NetshrinkError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)} (or a callable from Python)")
    if metric != "auto":
        if metric in TARGET_METRICS and targets is None:
            raise NetshrinkError(f"metric {metric!r} needs targets, and the data has none: "
                                 "use a fidelity metric against a reference model")
        if metric in FIDELITY and not has_reference:
            raise NetshrinkError(f"metric {metric!r} compares with a reference model: pass reference=...")
        if metric == "accuracy" and targets is not None and targets.is_floating_point():
            raise NetshrinkError("accuracy needs integer class targets; these are floats (use 'mse')")
        return metric
    if targets is not None:
        if targets.is_floating_point():
            return "mse"
        return "accuracy" if outputs.dim() >= 2 and outputs.shape[-1] > 1 else "mse"
    if not has_reference:
        return None
    if hidden or outputs.dim() > 2:
        return "fidelity_cosine"
    if outputs.dim() < 2 or outputs.shape[-1] == 1:   # one output: top-1 agreement would always be 1
        return "fidelity_relative_error"
    return "fidelity_top1"


def compute(name: str, metric, outputs: torch.Tensor, targets, ref_outputs: torch.Tensor | None,
            mask: torch.Tensor | None = None) -> float:
    """The value of metric `name` (`metric` is the callable when the user gave one).
    mask (N, T) bool, for outputs (N, T, ...): the fidelity metrics compare the real tokens
    only (train.loop.predict_positions): a padded position's output is never read
    downstream, and on short sentences padded to a batch's longest the padding outnumbers
    them (MiniLM, 512 sentences padded to 60 tokens: 67 % padding; per-token cosine 0.883
    over every position, 0.9976 over the tokens)."""
    if callable(metric):
        return float(metric(outputs, targets))
    o = outputs.float()
    if (name in FIDELITY and mask is not None and ref_outputs is not None and o.dim() >= 3
            and tuple(mask.shape) == tuple(o.shape[:2]) and bool(mask.any())):
        m = mask.to(o.device)
        o, ref_outputs = o[m], ref_outputs.to(o.device)[m]          # (tokens, ...)
    if name == "accuracy":
        return float((o.argmax(-1) == targets.to(o.device)).float().mean())
    if name in ("mse", "mae"):
        t = targets.to(o.device, o.dtype).reshape(o.shape)
        return float(F.mse_loss(o, t) if name == "mse" else F.l1_loss(o, t))
    r = ref_outputs.float()
    if name == "fidelity_top1":
        return float((o.argmax(-1) == r.argmax(-1)).float().mean())
    if name == "fidelity_top5":
        k = min(5, o.shape[-1])
        a, b = o.topk(k, -1).indices, r.topk(k, -1).indices   # (..., k)
        return float((a.unsqueeze(-1) == b.unsqueeze(-2)).any(-1).float().mean())
    if name == "fidelity_cosine":
        return float(F.cosine_similarity(o.reshape(-1, o.shape[-1]), r.reshape(-1, r.shape[-1]), dim=-1).mean())
    if name == "fidelity_relative_error":
        return float((o - r).norm() / r.norm().clamp_min(1e-12))
    if name == "fidelity_kl":
        o2, r2 = o.reshape(-1, o.shape[-1]), r.reshape(-1, r.shape[-1])
        return float(F.kl_div(F.log_softmax(o2, -1), F.log_softmax(r2, -1), log_target=True, reduction="batchmean"))
    raise NetshrinkError(f"unknown metric {name!r}")  # pragma: no cover - choose() checked it
