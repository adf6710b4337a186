"""`netshrink bench SUITE`: the benchmark suites of the separate `netshrink_bench` package."""
from __future__ import annotations

import typer

from netshrink.cli.common import console


def bench(suite: str = typer.Argument(..., help="suite name (see `netshrink bench list`)"),
          quick: bool = typer.Option(False, help="one fold, short budgets: a smoke check"),
          out: str = typer.Option("benchmarks", help="folder for results, tables and plots")):
    """Run a benchmark suite: results (JSON lines), tables and plots in benchmarks/, and BENCHMARKS.md."""
    # The one import of netshrink_bench in the library: the suites are not part of it
    # (tests/test_layers.py lists this as the allowed optional import).
    from netshrink_bench.registry import run_suite

    run_suite(suite, quick=quick, out=out, console=console)
