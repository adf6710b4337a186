"""Teacher-student training as recipe steps: `distill` (Hinton et al. 2015), `mimic`
(Ba & Caruana 2014) and `hints` (FitNets). All three are loss terms that stay active
in the phases of later steps (`persistent`), so a recipe can prune, quantize or
factorise while distilling.

The teacher is, by default, `ctx.teacher`: the frozen copy of the model taken by
`compress_` before compression (or a copy taken at `prepare` in a user's own loop);
`compress_(student, recipe, data, teacher=big)` or `teacher = "big.nshr"` give another.

Every one has the same two weights: `weight`, of the method's own loss term (soft
targets, logit regression, hint), and `label_weight`, of the hard-label task loss.
The trainer (and the loop in DESIGN.md) always adds its task loss L(outputs, y) with
weight 1 (the run's loss: cross-entropy for class targets, MSE for float targets, the
user's); these terms re-weight it to `label_weight` by adding (label_weight − 1)·L,
which changes the gradient exactly as intended. L is the trainer's own value
(`StepContext.task_loss`); in a user's loop without it, the auto loss of the targets
(train/losses.py: cross-entropy for integer classes, MSE for floats).

    >>> student = ns.zoo.derive_student(teacher, width=0.1, drop_layers=1)   # 784-30-10
    >>> ns.compress_(student, ns.Recipe.of(ns.create("distill", temperature=4.0)), data=train, teacher=teacher)
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from netshrink.artifact import load
from netshrink.core.batches import as_batches, output_tensor
from netshrink.core.context import PrepareContext, StepContext
from netshrink.core.method import Method
from netshrink.errors import NetshrinkError, TargetError
from netshrink.functional.distill import hint_loss, kd_loss, mimic_loss
from netshrink.train.losses import resolve

__all__ = ["Distill", "Mimic", "Hints"]


def _frozen(model: nn.Module) -> nn.Module:
    t = copy.deepcopy(model).eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return t


@dataclass
class _TeacherLoss(Method):
    """Shared: finding the teacher, the student's logits, the hard-label re-weighting."""

    persistent = True
    # A .nshr file to load the teacher from; empty = the model before compression.
    teacher: str = ""

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        if self.teacher:
            self.teacher_ = _frozen(load(self.teacher))
        elif ctx.teacher is not None:
            self.teacher_ = ctx.teacher.eval()
        else:  # a user's own loop: the model as it is now, before later steps change it
            self.teacher_ = _frozen(model)

    def _student_logits(self, ctx: StepContext) -> torch.Tensor:
        if ctx.x is None and ctx.batch is None:
            raise NetshrinkError(f"{self.name}: the loss needs the batch inputs: session.loss(x=x, y=y)")
        return ctx.logits if ctx.logits is not None else output_tensor(ctx.run(ctx.model))

    @torch.no_grad()
    def _teacher_logits(self, ctx: StepContext) -> torch.Tensor:
        """The teacher's main output on this step's batch (through the batch adapter)."""
        self.teacher_.eval()
        return output_tensor(ctx.run(self.teacher_))

    @staticmethod
    def _reweight_hard(ctx: StepContext, logits: torch.Tensor, hard_weight: float):
        """(hard_weight − 1)·L: turns the trainer's task loss L (weight 1) into hard_weight·L."""
        if ctx.y is None or hard_weight == 1.0:
            return None
        task = ctx.task_loss
        if task is None:   # a user's own loop: the auto loss of these targets
            task = resolve("auto", logits, ctx.y, has_teacher=False)(logits, ctx.y)
        return (hard_weight - 1.0) * task

    def _total(self, main: torch.Tensor, logits, ctx: StepContext, hard_weight: float) -> torch.Tensor:
        fix = self._reweight_hard(ctx, logits, hard_weight)
        return main if fix is None else main + fix


@dataclass
class Distill(_TeacherLoss):
    """Hinton's soft targets: weight·T²·KL(p_T(teacher) ‖ p_T(student)) + label_weight·CE
    (Hinton's alpha = weight, 1 − alpha = label_weight)."""

    name = "distill"
    summary = "knowledge distillation (Hinton et al. 2015): soft targets at temperature T, T² scaling, hard labels"

    temperature: float = 4.0
    weight: float = 0.9         # of the soft-target loss
    label_weight: float = 0.1   # of the hard-label CE

    renamed: ClassVar[dict[str, str]] = {
        "alpha": "'weight' (alpha, the soft targets) with 'label_weight' (1 - alpha, the hard labels)"}

    def validate(self):
        self.check(self.temperature > 0, "temperature", "> 0")
        self.check(self.weight >= 0, "weight", ">= 0")
        self.check(self.label_weight >= 0, "label_weight", ">= 0")

    def loss(self, ctx: StepContext) -> torch.Tensor:
        s = self._student_logits(ctx)
        t = self._teacher_logits(ctx)
        if s.dim() == 0 or s.shape[-1] == 1:
            raise NetshrinkError("distill: soft targets over a single output are identically 1, so the term is 0 "
                                 "(a regression?): use mimic, which regresses on the teacher's outputs")
        soft = self.weight * kd_loss(s, t, temperature=self.temperature)
        return self._total(soft, s, ctx, self.label_weight)


@dataclass
class Mimic(_TeacherLoss):
    """Ba & Caruana's logit regression: weight·½‖z_s − z_t‖² (+ label_weight·CE)."""

    name = "mimic"
    summary = "mimic learning (Ba & Caruana 2014): L2 regression on the teacher's logits"

    weight: float = 1.0
    label_weight: float = 0.0   # Ba & Caruana train on the logits alone

    def validate(self):
        self.check(self.weight > 0, "weight", "> 0")
        self.check(self.label_weight >= 0, "label_weight", ">= 0")

    def loss(self, ctx: StepContext) -> torch.Tensor:
        s = self._student_logits(ctx)
        main = self.weight * mimic_loss(s, self._teacher_logits(ctx))
        return self._total(main, s, ctx, self.label_weight)


def _adapter(student: torch.Tensor, teacher: torch.Tensor) -> nn.Module:
    """FitNets' regressor from a student feature (N, ...) to a teacher feature (N, ...):
    Linear over the last dim for vectors / sequences, a conv whose kernel shrinks the
    student's spatial size to the teacher's for maps (N, C, H, W)."""
    if student.dim() != teacher.dim():
        raise TargetError(f"hints: student feature {tuple(student.shape)} and teacher feature "
                          f"{tuple(teacher.shape)} have different ranks")
    if student.dim() in (2, 3):
        if student.shape[:-1] != teacher.shape[:-1]:
            raise TargetError(f"hints: cannot map {tuple(student.shape)} to {tuple(teacher.shape)}")
        return nn.Linear(student.shape[-1], teacher.shape[-1])
    if student.dim() == 4:
        kh, kw = student.shape[2] - teacher.shape[2] + 1, student.shape[3] - teacher.shape[3] + 1
        if kh < 1 or kw < 1:
            raise TargetError(f"hints: the student map {tuple(student.shape)} is smaller than the teacher's "
                              f"{tuple(teacher.shape)}")
        return nn.Conv2d(student.shape[1], teacher.shape[1], (kh, kw))
    raise TargetError(f"hints: features of shape {tuple(student.shape)} are not supported")


@dataclass
class Hints(_TeacherLoss):
    """FitNets hints: weight·½‖u_teacher − r(v_student)‖² with a learned regressor r."""

    name = "hints"
    summary = "FitNets hints: match a teacher feature map through a small learned adapter"

    student_layer: str = ""     # module name in the student (required)
    teacher_layer: str = ""     # module name in the teacher; empty = the same name
    weight: float = 1.0
    label_weight: float = 1.0   # FitNets train the hint beside the usual cross-entropy

    def validate(self):
        self.check(bool(self.student_layer), "student_layer", "the name of a module of the student")
        self.check(self.weight > 0, "weight", "> 0")
        self.check(self.label_weight >= 0, "label_weight", ">= 0")

    @torch.no_grad()
    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        super().prepare(model, ctx)
        t_name = self.teacher_layer or self.student_layer
        s_mod = _module(model, self.student_layer, "student_layer")
        t_mod = _module(self.teacher_, t_name, "teacher_layer")
        self._feats = {}
        self._handles = [
            s_mod.register_forward_hook(lambda m, i, o: self._feats.__setitem__("student", o)),
            t_mod.register_forward_hook(lambda m, i, o: self._feats.__setitem__("teacher", o)),
        ]
        if ctx.data is None:
            raise NetshrinkError("hints: needs training data to size its adapter")
        b = as_batches(ctx.data)
        one = b.take(1)[0]
        was = model.training
        model.eval()
        b.call(model, one)
        model.train(was)
        b.call(self.teacher_, one)
        # The adapter trains with the student: attach it as a submodule so the
        # optimizer sees it; `finalize` removes it again.
        self.adapter_ = _adapter(self._feats["student"], self._feats["teacher"])
        self.first_loss_ = self.last_loss_ = None
        self.slot_ = next(f"ns_hint_adapter{i}" for i in range(1000) if not hasattr(model, f"ns_hint_adapter{i}"))
        model.add_module(self.slot_, self.adapter_)

    def loss(self, ctx: StepContext) -> torch.Tensor:
        logits = self._student_logits(ctx)  # without ctx.logits: runs the student's forward, filling the hook
        student = self._feats["student"]
        self._teacher_logits(ctx)
        loss = self.weight * hint_loss(self.adapter_(student), self._feats["teacher"])
        # The first and the latest value, so a run (and a test) can see the hint being learnt.
        self.last_loss_ = float(loss.detach())
        if getattr(self, "first_loss_", None) is None:
            self.first_loss_ = self.last_loss_
        return self._total(loss, logits, ctx, self.label_weight)

    def finalize(self, model: nn.Module) -> None:
        for h in getattr(self, "_handles", []):
            h.remove()
        if getattr(self, "slot_", None) and hasattr(model, self.slot_):
            delattr(model, self.slot_)


def _module(model: nn.Module, name: str, field_name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        names = [n for n, _ in model.named_modules() if n]
        raise TargetError(f"hints: {field_name} {name!r} is not a module; modules: {', '.join(names)}") from None
