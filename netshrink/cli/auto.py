"""`netshrink auto`: compress a zoo baseline (or a saved model) to a size / latency budget
at most `--max-drop` points below it, choosing per layer; writes the resolved recipe."""
from __future__ import annotations

import copy
import shlex
from typing import Optional

import typer

from netshrink import load
from netshrink.auto import Budget
from netshrink.auto import auto as run_auto
from netshrink.auto.outputs import CHOICE_HEADERS, choices_rows
from netshrink.cli.common import console, invocation
from netshrink.cli.rundir import check_free, run_folder
from netshrink.errors import NetshrinkError
from netshrink.measure.tables import print_table
from netshrink.train.config import TrainConfig
from netshrink.zoo import data as zoo_data
from netshrink.zoo.baseline import baseline


def auto(model: Optional[str] = typer.Option(None, help="zoo model (its cached baseline is compressed)"),
         input: Optional[str] = typer.Option(None, "--input", help="compress this .nshr model instead"),
         data: str = typer.Option("mnist5k", help="zoo dataset: its training fold fine-tunes, its test fold verifies"),
         fold: int = typer.Option(0, help="fold (0-4)"),
         size: Optional[str] = typer.Option(None, help="file size budget, e.g. 200KB, 1.5MB, 64KiB"),
         latency: Optional[str] = typer.Option(None, help="latency budget, e.g. 2ms, 500us"),
         batch: int = typer.Option(1, help="batch size the latency budget is for"),
         max_drop: float = typer.Option(0.5, help="largest accuracy drop accepted, in points"),
         epochs: int = typer.Option(10, help="fine-tuning epochs after pruning (centroids: 3 more)"),
         methods: str = typer.Option("prune,kmeans", help="comma-separated: prune, kmeans, channels"),
         uniform: bool = typer.Option(False, help="also build the uniform allocation at the same budget"),
         explore: int = typer.Option(1, help="if the budget is missed: looser budgets tried (x1.5 each)"),
         out: str = typer.Option(..., help="run folder to write"),
         force: bool = typer.Option(False, help="replace an existing run folder")):
    """Search per-layer sparsity and bits (and channel widths for a latency budget) under
    the budget, compress with fine-tuning, verify the saved file's bytes, the measured
    latency and the drop; writes recipe.toml (replayable with `netshrink compress`),
    choices.md, points.json, pareto.png and model.nshr."""
    budget = Budget.parse(size=size, latency=latency, batch=batch, max_drop=max_drop)
    check_free(out, force)
    if (model is None) == (input is None):
        raise NetshrinkError("give exactly one of --model (a zoo baseline) or --input (a .nshr file)")
    if epochs < 0:
        raise NetshrinkError(f"--epochs must be >= 0, got {epochs}")
    train_ds, test = zoo_data.load(data, fold)
    base = load(input) if input else baseline(model, data, fold)
    res = run_auto(copy.deepcopy(base), train_ds, budget, eval_data=test, finetune=TrainConfig(epochs=epochs),
                   methods=[m.strip() for m in methods.split(",") if m.strip()], compare_uniform=uniform,
                   explore=explore, log=console.print)
    src = f"--model {shlex.quote(model)}" if model else f"--input {shlex.quote(input)}"
    reproduce = (f"netshrink compress {src} --data {data} --fold {fold} --recipe {shlex.quote(out)}/recipe.toml "
                 f"--out {shlex.quote(out)}/reproduce")
    with run_folder(out, force) as d:
        res.write(d, command=invocation(), reproduce=reproduce)
    rows = choices_rows(res)
    if rows:
        print_table("per-layer choices", CHOICE_HEADERS, rows, console)
    print_table(f"points tried (baseline {100 * res.baseline_acc:.2f} %, dense fp32 {res.dense_bytes:,} B, "
                f"search {res.seconds:.0f} s)", ["point", "bytes", "ratio", "drop (pp)", "latency (ms)", "meets"],
                [[p.label, f"{p.bytes:,}", f"{res.dense_bytes / p.bytes:.1f}x", f"{p.drop_pp:.2f}",
                  "" if p.latency_ms is None else f"{p.latency_ms:.3f}", "yes" if p.met else "no"]
                 for p in res.points], console)
    console.print(f"wrote {out}/ (recipe.toml, choices.md, points.json, pareto.png, model.nshr)")
    res.check()
