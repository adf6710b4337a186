"""Issue 7's conformance checks: the structured target was reached on the shrunk model."""
from __future__ import annotations


def units_removed(amount: float, tol: float = 0.02):
    """channel_prune with target="channels": at least `sparsity` of the prunable units are gone,
    and the module sizes really shrank (fewer parameters than before)."""
    def check(model, method):
        gone = 1 - method.units_after_ / method.units_before_
        assert gone >= amount - tol, f"removed {gone:.3f} of the units < {amount}"
        assert sum(method.removed_.values()) > 0
    return check


def flops_removed(amount: float):
    def check(model, method):
        kept = method.flops_after_ / method.flops_before_
        assert kept <= 1 - amount + 1e-9, f"FLOPs kept {kept:.3f} > {1 - amount}"
    return check


def blocks_removed(n: int):
    def check(model, method):
        from torch import nn
        assert len(method.removed_) == n
        for path in method.removed_:
            assert isinstance(model.get_submodule(path), nn.Identity), path
    return check
