"""Benchmark suites by name. Each suite module has `run(ctx: BenchContext)`.

Suites are listed here by hand; add yours to `SUITES`.
"""
from __future__ import annotations

import importlib

from netshrink.bench.results import BenchContext, regenerate_index
from netshrink.errors import NetshrinkError

# suite name -> module path (imported only when that suite runs)
SUITES: dict[str, str] = {
    "regularize": "netshrink.bench.suites.regularize",   # issue 5
    "generated": "netshrink.bench.suites.generated",   # issue 8
    "structured": "netshrink.bench.suites.structured",   # issue 7
    "distill": "netshrink.bench.suites.distill",   # issue 6
    "lowrank": "netshrink.bench.suites.lowrank",   # issue 6
    "pruning": "netshrink.bench.suites.pruning",
    "quantization": "netshrink.bench.suites.quantization",   # issue 4
}


def run_suite(name: str, *, quick: bool, out: str, console) -> None:
    if name == "list":
        for n in SUITES:
            console.print(n)
        return
    if name not in SUITES:
        raise NetshrinkError(f"unknown benchmark suite {name!r}; valid suites: {', '.join(SUITES) or '(none yet)'}")
    module = importlib.import_module(SUITES[name])
    ctx = BenchContext(suite=name, quick=quick, out=out, console=console)
    module.run(ctx)
    regenerate_index(out)
