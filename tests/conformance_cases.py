"""The conformance cases: at least one per registered method.

Adding a method to the registry without a case here fails the suite. A case names
the method's parameters, a tiny zoo model and dataset, and a `check` that asserts
the method's target (sparsity / bits / rank ...) was reached on the finished model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from torch import nn

import netshrink as ns


@dataclass
class Case:
    params: dict
    model: str = "lenet300_100"
    model_kwargs: dict = field(default_factory=lambda: {"in_features": 64})
    data: str = "digits"
    epochs: int = 1
    check: Callable[[nn.Module, ns.Method], None] | None = None
    id: str = ""


def weight_sparsity(model: nn.Module) -> float:
    ws = [s.tensor.detach() for s in ns.select(model)]
    return 1 - sum(int((w != 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def sparsity_at_least(target: float, tol: float = 0.002):
    def check(model, method):
        s = weight_sparsity(model)
        assert s >= target - tol, f"sparsity {s:.4f} < target {target}"
    return check


CASES: dict[str, list[Case]] = {
    "magnitude": [
        Case({"sparsity": 0.9}, check=sparsity_at_least(0.9), id="layer"),
        Case({"sparsity": 0.9, "scope": "global", "min_keep": 0.05}, check=sparsity_at_least(0.9), id="global"),
        Case({"sparsity": 0.8}, model="lenet5", model_kwargs={"input_size": 28}, data="mnist5k-small",
             check=sparsity_at_least(0.8), id="conv"),
        Case({"sparsity": 0.8}, model="lstm", model_kwargs={"input_size": 8, "hidden_size": 16},
             check=sparsity_at_least(0.8), id="lstm"),
    ],
    "random": [Case({"sparsity": 0.7, "seed": 3}, check=sparsity_at_least(0.7))],
}
