"""Parameter and non-zero counts.

Runtime modules that store weights in another form (CSR, int8, buckets) report their
own counts through `ns_counts() -> (dense_params, stored_nonzeros)`, so a sparse
layer still counts as the dense layer it replaces.
"""
from __future__ import annotations

from torch import nn


def param_counts(model: nn.Module) -> tuple[int, int]:
    """(parameters, non-zeros) of `model`, seeing through runtime modules."""
    total = nonzero = 0

    def visit(m: nn.Module):
        nonlocal total, nonzero
        if hasattr(m, "ns_counts"):
            t, nz = m.ns_counts()
            total += t
            nonzero += nz
            return
        for p in m.parameters(recurse=False):
            total += p.numel()
            nonzero += int((p.detach() != 0).sum())
        for c in m.children():
            visit(c)

    visit(model)
    return total, nonzero


def layer_table(model: nn.Module) -> list[dict]:
    """Per weight tensor: name, shape, parameters, non-zeros, sparsity."""
    rows = []
    for name, p in model.named_parameters():
        nz = int((p.detach() != 0).sum())
        rows.append({"name": name, "shape": list(p.shape), "params": p.numel(), "nonzeros": nz,
                     "sparsity": 1 - nz / max(p.numel(), 1)})
    return rows


def dense_zero_count(model: nn.Module) -> int:
    """Exact zeros inside ordinary dense parameters, which every kernel multiplies
    anyway (runtime modules that store weights another way are not looked into)."""
    zeros = 0

    def visit(m: nn.Module):
        nonlocal zeros
        if hasattr(m, "ns_counts"):
            return
        zeros += sum(int((p.detach() == 0).sum()) for p in m.parameters(recurse=False))
        for c in m.children():
            visit(c)

    visit(model)
    return zeros
