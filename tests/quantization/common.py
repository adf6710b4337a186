"""Checks of issue 4's conformance cases: the finished model holds the promised
number of distinct values per layer (bits), zeros included, or runs int8."""
from __future__ import annotations

import torch
from torch import nn

import netshrink as ns


def _weights(model: nn.Module) -> list[torch.Tensor]:
    ws = [s.tensor.detach() for s in ns.select(model)]
    assert ws, "no weights to check"      # a loop over nothing would pass
    return ws


def distinct_at_most(levels: int, *, plus_zero: bool = False):
    """Every targeted weight tensor holds <= levels (+1 for an exact zero) distinct values."""
    def check(model, method):
        for w in _weights(model):
            vals = torch.unique(w)
            limit = levels + (1 if plus_zero and bool((vals == 0).any()) else 0)
            assert vals.numel() <= limit, f"{vals.numel()} distinct values > {limit}"
    return check


def per_channel_distinct_at_most(levels: int):
    def check(model, method):
        for w in _weights(model):
            for row in w.reshape(w.shape[0], -1):
                assert torch.unique(row).numel() <= levels
    return check


def ternary(model, method):
    for w in _weights(model):
        vals = torch.unique(w)
        assert vals.numel() <= 3 and bool((vals == 0).any()), vals
        assert torch.equal(vals.abs().unique(), vals.abs().unique()[:2])


def runs_int8(count: int):
    def check(model, method):
        from netshrink.runtime.int8_linear import Int8Linear

        n = sum(isinstance(m, Int8Linear) for m in model.modules())
        assert n == count, f"{n} Int8Linear layers, expected {count}"
    return check


def scaled_per_channel_distinct_at_most(levels: int, count: int):
    """AWQ: `count` ScaledLinear layers whose (scaled) weights hold <= levels values per row."""
    def check(model, method):
        layers = [m for m in model.modules() if type(m).__name__ == "ScaledLinear"]
        assert len(layers) == count, f"{len(layers)} ScaledLinear layers, expected {count}"
        for m in layers:
            worst = max(torch.unique(row).numel() for row in m.weight.detach())
            assert worst <= levels, f"{worst} distinct values in a row > {levels}"
    return check


def runs_int8_kernels(count: int):
    """`count` layers run an int8 kernel (Int8Linear or the dynamic-activation one)."""
    def check(model, method):
        names = {"Int8Linear", "Int8DynamicLinear"}
        n = sum(type(m).__name__ in names for m in model.modules())
        assert n == count, f"{n} int8 layers, expected {count}"
    return check


def shared_and_sparse(max_values: int):
    """Soft sharing: few distinct values, a real fraction of exact zeros."""
    def check(model, method):
        ws = _weights(model)
        allv = torch.unique(torch.cat([w.reshape(-1) for w in ws]))
        assert allv.numel() <= max_values, f"{allv.numel()} distinct values > {max_values}"
        zeros = sum(int((w == 0).sum()) for w in ws) / sum(w.numel() for w in ws)
        assert zeros > 0.05, f"only {zeros:.3f} of the weights snapped to zero"
    return check


def group_distinct_at_most(levels: int, group_size: int):
    def check(model, method):
        for w in _weights(model):
            for g in w.reshape(-1, group_size):
                assert torch.unique(g).numel() <= levels
    return check


def embedding_rows_mean_bits_at_most(bits: float):
    """embedding_bits: every row of every nn.Embedding on its own grid, the table's mean
    width (bits to tell a row's distinct values apart) at most `bits`."""
    def check(model, method):
        tables = [m.weight.detach() for m in model.modules() if isinstance(m, torch.nn.Embedding)]
        assert tables
        for w in tables:
            widths = [max(1, int(torch.unique(row).numel() - 1).bit_length()) for row in w]
            assert sum(widths) / len(widths) <= bits + 1e-9, (sum(widths) / len(widths), bits)
    return check
