"""`netshrink bench SUITE`: the benchmark suites of the separate `netshrink_bench` package."""
from __future__ import annotations

from pathlib import Path

import typer

from netshrink.cli.common import console
from netshrink.cli.rundir import check_writable_dir


def bench(suite: str = typer.Argument(..., help="suite name (see `netshrink bench list`)"),
          quick: bool = typer.Option(False, help="one fold, short budgets: a smoke check"),
          out: str = typer.Option("benchmarks", help="folder for results, tables and plots")):
    """Run a benchmark suite: results (JSON lines), tables and plots in benchmarks/, and BENCHMARKS.md."""
    # The one import of netshrink_bench in the library: the suites are not part of it
    # (tests/test_layers.py lists this as the allowed optional import).
    from netshrink_bench.registry import run_suite

    if suite != "list":   # before any work: the results folder and BENCHMARKS.md beside it
        check_writable_dir(out, "bench --out")
        check_writable_dir(Path(out).resolve().parent, "bench --out (BENCHMARKS.md)")
    run_suite(suite, quick=quick, out=out, console=console)
