"""Issue 7's conformance checks: the structured target was reached on the shrunk model
(counted on the model itself, so that the checks fail on an unpruned one)."""
from __future__ import annotations

import torch

import netshrink as ns
from netshrink.measure.flops import count_flops
from netshrink.structure.graph import analyze


def _example(data: str) -> torch.Tensor:
    test = ns.zoo.data.load("mnist5k" if data == "mnist5k-small" else data, 0)[1]
    return torch.stack([test[0][0], test[1][0]])


def units_removed(sparsity: float, data: str = "digits", tol: float = 0.02):
    """channel_prune with target="channels": at least `sparsity` of the prunable units
    the method counted before are gone from the model's dependency graph now."""
    def check(model, method):
        now = sum(len(g) for g in analyze(model, _example(data)).groups)
        gone = 1 - now / method.units_before_
        assert gone >= sparsity - tol, f"removed {gone:.3f} of the units < {sparsity}"
    return check


def flops_removed(sparsity: float, data: str = "digits"):
    def check(model, method):
        kept = count_flops(model, _example(data)[:1])[0] / method.flops_before_
        assert kept <= 1 - sparsity + 1e-9, f"FLOPs kept {kept:.3f} > {1 - sparsity}"
    return check


def blocks_removed(n: int):
    def check(model, method):
        from torch import nn
        assert len(method.removed_) == n
        for path in method.removed_:
            assert isinstance(model.get_submodule(path), nn.Identity), path
    return check
