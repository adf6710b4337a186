"""Benchmark suites by name (the `netshrink_bench` package: installed beside netshrink, never imported by the library except by the CLI's `bench` command). Each suite module has `run(ctx: BenchContext)`.

Suites are listed here by hand; add yours to `SUITES`.
"""
from __future__ import annotations

import importlib

from netshrink_bench.results import BenchContext, regenerate_index
from netshrink.errors import NetshrinkError

# suite name -> module path (imported only when that suite runs)
SUITES: dict[str, str] = {
    "regularize": "netshrink_bench.suites.regularize",   # issue 5
    "generated": "netshrink_bench.suites.generated",   # issue 8
    "structured": "netshrink_bench.suites.structured",   # issue 7
    "distill": "netshrink_bench.suites.distill",   # issue 6
    "lowrank": "netshrink_bench.suites.lowrank",   # issue 6
    "pruning": "netshrink_bench.suites.pruning",
    "quantization": "netshrink_bench.suites.quantization",   # issue 4
    "architectures": "netshrink_bench.suites.architectures",   # issue 13
    "transformer": "netshrink_bench.suites.transformer",   # issue 15
    "auto": "netshrink_bench.suites.auto",   # issue 16
    "fuzz": "netshrink_bench.suites.fuzz",   # issue 14
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
