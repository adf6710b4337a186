"""Conformance checks of issue 6's factorisation methods (low_rank, sketch)."""
from __future__ import annotations

from netshrink.runtime.low_rank import LowRankLinear, LowRankRNN, TuckerConv


def factorised(kind=LowRankLinear, *, at_least: int = 1, ratio: float | None = None, max_rank: int | None = None):
    """At least `at_least` layers became `kind`; each holds ≤ `ratio` of its dense
    weights and / or has rank ≤ `max_rank`; the method's `ranks_` names them."""
    def check(model, method):
        mods = {n: m for n, m in model.named_modules() if isinstance(m, kind)}
        assert len(mods) >= at_least, f"only {len(mods)} {kind.__name__} layers"
        for name, m in mods.items():
            dense, stored = m.weight_counts()
            assert stored < dense, f"{name}: factors ({stored}) not smaller than the layer ({dense})"
            if ratio is not None:
                assert stored <= ratio * dense + 1e-9, f"{name}: {stored / dense:.3f} of the weights > {ratio}"
            if isinstance(m, LowRankRNN):
                ranks, got = list(m.ranks.values()), list(method.ranks_[name].values())
            else:
                ranks = [m.rank] if isinstance(m, LowRankLinear) else [m.r_out, m.r_in]
                got = method.ranks_[name] if isinstance(method.ranks_[name], list) else [method.ranks_[name]]
            if max_rank is not None:
                assert max(ranks) <= max_rank, f"{name}: rank {ranks} > {max_rank}"
            assert got == ranks
    return check


__all__ = ["factorised", "LowRankLinear", "LowRankRNN", "TuckerConv"]
