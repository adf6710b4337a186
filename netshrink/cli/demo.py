"""`netshrink demo`: the whole job on built-in data, in about a minute.

Baseline LeNet-300-100 on mnist5k fold 0 (trained once, then cached) → global
magnitude pruning to 90 % with fine-tuning → before/after table → a run folder with
the resolved recipe, report.json, the saved model and a plot of accuracy vs sparsity
(magnitude and random pruning, each fine-tuned with the same budget).
"""
from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from netshrink import Recipe, TrainConfig, compress_, create
from netshrink.cli.common import console as default_console
from netshrink.cli.common import invocation
from netshrink.cli.rundir import run_folder, write_run
from netshrink.measure.plots import line_plot
from netshrink.measure.report import measure
from netshrink.measure.tables import comparison_rows, print_table
from netshrink.train.loop import evaluate
from netshrink.zoo import data as zoo_data
from netshrink.zoo.baseline import baseline

DEMO_RECIPE = Recipe.of(create("magnitude", sparsity=0.9, scope="global"),
                        finetune=TrainConfig(epochs=10, lr=1e-3))
SWEEP = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99)


def run_demo(out: str = "runs/demo", force: bool = False, fold: int = 0, console: Console | None = None) -> dict:
    console = console or default_console
    with run_folder(out, force) as d:
        console.print(f"[bold]netshrink demo[/]: LeNet-300-100 on mnist5k fold {fold}")
        train, test = zoo_data.load("mnist5k", fold)
        base = baseline("lenet300_100", "mnist5k", fold)
        model = copy.deepcopy(base)
        t0 = time.perf_counter()
        compress_(model, DEMO_RECIPE, data=train)
        seconds = time.perf_counter() - t0
        before = measure(base, test, latency=False)  # timed below, as the reference
        after = measure(model, test, reference=base)
        print_table(f"LeNet-300-100, global magnitude pruning to 90 % (compressed in {seconds:.1f} s)",
                    ["figure", "baseline", "compressed"], comparison_rows(before, after), console)
        for note in after.notes:
            console.print(f"[yellow]note:[/] {note}")

        curves = {"magnitude (global)": [], "random": []}
        for s in SWEEP:
            for label, method in (("magnitude (global)", "magnitude"), ("random", "random")):
                if method == "magnitude" and s == 0.9:  # the run above
                    curves[label].append(100 * after.accuracy)
                    continue
                params = {"sparsity": s, "scope": "global"}
                m = copy.deepcopy(base)
                compress_(m, Recipe.of(create(method, **params), finetune=DEMO_RECIPE.finetune), data=train,
                          progress=False)
                curves[label].append(100 * evaluate(m, test))
        line_plot(d / "accuracy_vs_sparsity.png", {k: ([100 * s for s in SWEEP], v) for k, v in curves.items()},
                  xlabel="sparsity (%)", ylabel="test accuracy (%)", baseline=100 * before.accuracy,
                  title=f"LeNet-300-100 on mnist5k fold {fold}, fine-tuned 10 epochs")
        print_table("accuracy (%) vs sparsity, each fine-tuned 10 epochs", ["sparsity", *curves],
                    [[f"{100 * s:g} %", *(f"{curves[k][i]:.2f}" for k in curves)] for i, s in enumerate(SWEEP)],
                    console)
        write_run(d, recipe=DEMO_RECIPE, model=model, before=before, after=after, seconds=seconds,
                  header=f"LeNet-300-100 on mnist5k fold {fold} — {invocation()}",
                  extra={"sweep": {"sparsity": list(SWEEP), **curves}})
    console.print(f"wrote {out}/: recipe.toml, report.json, model.nshr, accuracy_vs_sparsity.png")
    return json.loads((Path(out) / "report.json").read_text())


def demo(out: Optional[str] = typer.Option(None, help="run folder to write (default: a new runs/demo-<time>)"),
         force: bool = typer.Option(False, help="replace an existing run folder"),
         fold: int = typer.Option(0, help="mnist5k fold (0-4)")):
    """Baseline LeNet-300-100 on mnist5k, pruned to 90 %: a before/after table and a run folder."""
    # A new folder per run: `make demo` twice never fails and never overwrites.
    run_demo(out or time.strftime("runs/demo-%Y%m%d-%H%M%S"), force, fold)
