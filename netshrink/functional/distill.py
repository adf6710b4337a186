"""Pure maths of teacher-student training: soft targets, logit regression, hints.

- Knowledge distillation (Hinton, Vinyals, Dean 2015): the student matches the
  teacher's softened distribution softmax(z/T); the soft loss is multiplied by T²
  so its gradients keep the same scale when T changes (they shrink as 1/T²).
- Mimic / logit regression (Ba & Caruana 2014): L2 regression on the teacher's logits.
- Hints (FitNets, Romero et al. 2015): L2 between a teacher feature map and a
  learned regressor applied to the student's feature map.

All losses are means over the batch (N = first dimension).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_targets(logits: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """softmax(z / T) over the last dimension: (N, C) -> (N, C)."""
    return F.softmax(logits / temperature, dim=-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, *, temperature: float) -> torch.Tensor:
    """Hinton's soft loss: T² · KL(softmax(t/T) ‖ softmax(s/T)), mean over the batch.

    KL rather than the cross-entropy with soft targets: the two differ by the
    teacher's entropy, a constant, so the gradients are identical, and KL is 0 when
    the student matches the teacher exactly.

    >>> kd_loss(torch.tensor([[1., 0.]]), torch.tensor([[0., 1.]]), temperature=1.0)
    """
    t = temperature
    log_p_s = F.log_softmax(student_logits / t, dim=-1)   # (N, C)
    log_p_t = F.log_softmax(teacher_logits / t, dim=-1)   # (N, C)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)    # (N,)
    return (t * t) * kl.mean()


def distill_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, *,
                 temperature: float, alpha: float) -> torch.Tensor:
    """The whole KD objective: alpha · kd_loss + (1 − alpha) · CE(student, labels).

    Hinton et al. give the hard-label term "a considerably lower weight", so alpha is
    usually close to 1.
    """
    soft = kd_loss(student_logits, teacher_logits, temperature=temperature)
    return alpha * soft + (1 - alpha) * F.cross_entropy(student_logits, labels)


def mimic_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Ba & Caruana's logit regression: 1/(2N) · Σ_n ‖s_n − t_n‖², (N, C) inputs."""
    diff = student_logits - teacher_logits
    return 0.5 * diff.pow(2).sum(-1).mean()


def hint_loss(regressed: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """FitNets' hint loss: ½ ‖u_h − r(v_g)‖² per example, mean over the batch.

    regressed: the student's guided-layer output after the regressor, same shape as
    teacher_features (N, ...).
    """
    diff = (regressed - teacher_features).reshape(regressed.shape[0], -1)
    return 0.5 * diff.pow(2).sum(-1).mean()
