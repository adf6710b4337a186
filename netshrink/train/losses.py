"""The fine-tuning loss: the user's, a named one, or distillation toward the model as it
was before compression.

Names (TOML `[finetune] loss = ...`, CLI `--loss`):
- `auto` (default): cross-entropy for integer class targets, binary cross-entropy for
  integer targets of a single-output model, MSE for float targets; where the data has no
  target, `distill`.
- `cross_entropy`, `bce` (with logits), `mse`, `l1`, `smooth_l1`: against the batch's target.
- `distill`: match the pre-compression model's outputs, chosen by what the model returns:
  HF outputs with `logits` -> `distill_kl` (KL(teacher || student), T = 1, batchmean over
  every position); HF outputs with hidden states only (`last_hidden_state`,
  `pooler_output`: embeddings) -> `distill_cosine` (1 - cosine along the last dim, mean);
  a plain tensor -> `distill_kl` when the batch has integer class targets, else
  `distill_mse` (MSE relative to the teacher's mean square, so 1.0 = as far as zeros).
From Python, `loss` may also be a callable `loss(outputs, target) -> scalar Tensor`
(`outputs` as the model returns them; `target` None for unlabelled data).

Outside the training loop (importance scores, saliency, loss-ranked depth pruning), the
same loss on one batch through the adapter, resolved the same way on the first batch:

    loss = BatchLoss.of_context(ctx)      # compress_(loss=...) / [finetune] loss, ctx.teacher
    loss(b, model, batch).backward()      # b: the core.batches.Batches reading `batch`
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from netshrink.core.batches import Batches, output_tensor
from netshrink.errors import NetshrinkError

TASK = ("cross_entropy", "bce", "mse", "l1", "smooth_l1")
DISTILL = ("distill", "distill_kl", "distill_mse", "distill_cosine")
LOSSES = ("auto", *TASK, *DISTILL)


@dataclass(frozen=True)
class TaskLoss:
    """A resolved loss. `distills`: it needs the teacher's outputs."""

    name: str
    fn: Callable[..., torch.Tensor]
    distills: bool = False

    def __call__(self, outputs, target, teacher_outputs=None) -> torch.Tensor:
        if self.distills:
            return self.fn(outputs, teacher_outputs)
        return self.fn(outputs, target)


def resolve(spec, outputs, target, *, has_teacher: bool) -> TaskLoss:
    """The loss `spec` (a name from LOSSES or a callable) means for a model whose first
    batch gave `outputs` and `target` (None: unlabelled)."""
    if callable(spec):
        return TaskLoss(getattr(spec, "__name__", "custom"), spec)
    if spec not in LOSSES:
        raise NetshrinkError(f"unknown loss {spec!r}; valid: {', '.join(LOSSES)} (or a callable from Python)")
    out = output_tensor(outputs)
    if spec == "auto":
        if target is None:
            spec = "distill"
        elif not torch.is_tensor(target) or target.is_floating_point():
            spec = "mse"
        else:
            spec = "bce" if out.numel() == target.numel() else "cross_entropy"
    if spec in DISTILL:
        if not has_teacher:
            raise NetshrinkError(f"loss {spec!r} needs the pre-compression model as a teacher, and there is none")
        if spec == "distill":
            spec = _distill_kind(outputs, target)
        return TaskLoss(spec, _DISTILL_FNS[spec], distills=True)
    if target is None:
        raise NetshrinkError(f"loss {spec!r} needs targets, but the data's batches have none "
                             "(no labels: use loss = 'distill', the default for unlabelled data)")
    _check_target(spec, out, target)
    return TaskLoss(spec, _TASK_FNS[spec])


class BatchLoss:
    """The run's loss of a model on one batch, read through the batch adapter: `spec` (a
    name from LOSSES or a callable) resolved by `resolve` on the first batch it sees, as
    `fit` does; a distillation loss calls `teacher` on the same batch.

    owner: named in the message when the loss cannot be resolved (a method, a criterion).
    """

    def __init__(self, spec="auto", teacher=None, owner: str = "loss"):
        self.spec, self.teacher, self.owner = spec, teacher, owner
        self.task: TaskLoss | None = None

    @classmethod
    def of_context(cls, ctx, owner: str = "loss") -> "BatchLoss":
        """The loss of a recipe step's PrepareContext: `ctx.loss` (compress_(loss=...)), else
        `ctx.finetune.loss`, else auto; toward `ctx.teacher` where it distils."""
        spec = getattr(ctx, "loss", None)
        if spec is None:
            spec = getattr(getattr(ctx, "finetune", None), "loss", None) or "auto"
        return cls(spec, getattr(ctx, "teacher", None), owner)

    @property
    def name(self) -> str | None:
        return self.task.name if self.task is not None else None

    @property
    def distills(self) -> bool:
        return self.task is not None and self.task.distills

    def __call__(self, b: Batches, model, batch) -> torch.Tensor:
        outputs = b.call(model, batch)
        _, y = b.split(batch)
        if self.task is None:
            try:
                self.task = resolve(self.spec, outputs, y, has_teacher=self.teacher is not None)
            except NetshrinkError as e:
                raise NetshrinkError(f"{self.owner}: {e}") from None
        t_out = None
        if self.task.distills:
            with torch.no_grad():
                t_out = b.call(self.teacher, batch)
        return self.task(outputs, y, t_out)


def as_batch_loss(loss, owner: str = "loss") -> BatchLoss:
    """`loss` as a BatchLoss: one already (kept), a name or a callable (no teacher), or None
    (auto)."""
    if isinstance(loss, BatchLoss):
        return loss
    return BatchLoss("auto" if loss is None else loss, None, owner)


def _distill_kind(outputs, target) -> str:
    if _field(outputs, "logits") is not None:
        return "distill_kl"
    if any(_field(outputs, k) is not None for k in ("last_hidden_state", "pooler_output")):
        return "distill_cosine"
    if torch.is_tensor(target) and not target.is_floating_point():
        return "distill_kl"
    return "distill_mse"


def _field(outputs, key):
    if isinstance(outputs, torch.Tensor):
        return None
    return outputs.get(key) if hasattr(outputs, "get") else getattr(outputs, key, None)


def _check_target(spec: str, out: torch.Tensor, target) -> None:
    if not torch.is_tensor(target):
        raise NetshrinkError(f"loss {spec!r}: the target is a {type(target).__name__}, not a tensor")
    if spec == "cross_entropy":
        if target.is_floating_point():
            raise NetshrinkError(f"loss 'cross_entropy' needs integer class targets, got {target.dtype} "
                                 "targets (a regression? use loss = 'mse')")
        if out.dim() == 0 or out.shape[-1] == 1:
            raise NetshrinkError("loss 'cross_entropy' on a single output is identically 0 "
                                 "(one class): use 'bce' for a binary target or 'mse' for regression")
    elif out.numel() != target.numel():
        raise NetshrinkError(f"loss {spec!r}: the model's output {tuple(out.shape)} and the target "
                             f"{tuple(target.shape)} hold different numbers of values")


def _cross_entropy(outputs, target):
    out = output_tensor(outputs)
    target = target.to(out.device)
    if out.dim() > 2 and target.dim() == out.dim() - 1 and target.shape == out.shape[:-1]:
        out, target = out.reshape(-1, out.shape[-1]), target.reshape(-1)   # (B, L, V), (B, L) tokens
    return F.cross_entropy(out.float() if out.dtype in (torch.float16, torch.bfloat16) else out, target)


def _regression(fn):
    def loss(outputs, target):
        out = output_tensor(outputs)
        return fn(out, target.to(out.device, out.dtype).reshape(out.shape))
    return loss


_TASK_FNS: dict[str, Callable] = {
    "cross_entropy": _cross_entropy,
    "bce": _regression(F.binary_cross_entropy_with_logits),
    "mse": _regression(F.mse_loss),
    "l1": _regression(F.l1_loss),
    "smooth_l1": _regression(F.smooth_l1_loss),
}


def distill_kl(outputs, teacher) -> torch.Tensor:
    s, t = output_tensor(outputs).float(), output_tensor(teacher).float()
    s, t = s.reshape(-1, s.shape[-1]), t.reshape(-1, t.shape[-1])  # (positions, classes)
    return F.kl_div(F.log_softmax(s, -1), F.log_softmax(t, -1), log_target=True, reduction="batchmean")


def distill_mse(outputs, teacher) -> torch.Tensor:
    s, t = output_tensor(outputs).float(), output_tensor(teacher).float()
    return F.mse_loss(s, t) / t.pow(2).mean().clamp_min(1e-12)


def distill_cosine(outputs, teacher) -> torch.Tensor:
    s, t = output_tensor(outputs).float(), output_tensor(teacher).float()
    return (1 - F.cosine_similarity(s, t, dim=-1)).mean()


_DISTILL_FNS: dict[str, Callable[[Any, Any], torch.Tensor]] = {
    "distill_kl": distill_kl, "distill_mse": distill_mse, "distill_cosine": distill_cosine,
}
