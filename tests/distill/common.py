"""Conformance checks of issue 6's teacher-student methods (distill, mimic, hints)."""
from __future__ import annotations

import netshrink as ns


def agrees_with_teacher(at_least: float):
    """The student (here: the model distilled from its own pre-compression copy)
    predicts like its teacher on the digits test fold, and no adapter is left."""
    def check(model, method):
        _, test = ns.zoo.data.load("digits", 0)
        agree = ns.evaluate(model, test, reference=method.teacher_)
        assert agree >= at_least, f"agreement with the teacher {agree:.3f} < {at_least}"
        left = [n for n, _ in model.named_children() if n.startswith("ns_hint_adapter")]
        assert not left, f"adapters left in the model: {left}"
    return check


def hint_learnt(model, method):
    """The hint loss fell during training and the adapter was removed at finalize."""
    assert method.first_loss_ is not None and method.last_loss_ < method.first_loss_, \
        f"hint loss {method.first_loss_} -> {method.last_loss_} did not fall"
    left = [n for n, _ in model.named_children() if n.startswith("ns_hint_adapter")]
    assert not left, f"adapters left in the model: {left}"


def recovered(model, method):
    """`recover` trained (steps were taken) and its hidden-state loss did not rise."""
    report = getattr(method, "report_", None)
    assert report, "recover left no report"
    for name, r in report.items():
        assert r["steps"] > 0, f"{name}: no optimiser step was taken"
        assert r["loss_after"] <= r["loss_before"] + 1e-6, f"{name}: loss {r['loss_before']} -> {r['loss_after']}"
