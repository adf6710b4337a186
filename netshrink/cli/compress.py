"""`netshrink compress`: a recipe applied to a zoo baseline or a saved model, into a run folder."""
from __future__ import annotations

import copy
import time
from typing import Optional

import typer

from netshrink import Recipe, compress_, load
from netshrink.cli.common import console, invocation
from netshrink.cli.rundir import check_free, run_folder, write_run
from netshrink.errors import NetshrinkError
from netshrink.measure.report import measure
from netshrink.measure.tables import comparison_rows, print_table
from netshrink.zoo import data as zoo_data
from netshrink.zoo.baseline import baseline


def compress(recipe: str = typer.Option(..., help="recipe TOML file"),
             out: str = typer.Option(..., help="run folder to write"),
             model: Optional[str] = typer.Option(None, help="zoo model (its cached baseline is compressed)"),
             data: str = typer.Option("mnist5k", help="zoo dataset for fine-tuning and measurement"),
             fold: int = typer.Option(0, help="fold (0-4)"),
             input: Optional[str] = typer.Option(None, "--input", help="compress this .nshr model instead"),
             onnx: bool = typer.Option(False, "--onnx", help="also time both models in ONNX Runtime"),
             force: bool = typer.Option(False, help="replace an existing run folder")):
    """Compress a model with a recipe: writes recipe.toml, report.json and model.nshr to --out."""
    rec = Recipe.from_toml(recipe)          # fail fast, before any training
    check_free(out, force)
    if (model is None) == (input is None):
        raise NetshrinkError("give exactly one of --model (a zoo baseline) or --input (a .nshr file)")
    train_ds, test = zoo_data.load(data, fold)
    base = load(input) if input else baseline(model, data, fold)
    net = copy.deepcopy(base)
    with run_folder(out, force) as d:
        t0 = time.perf_counter()
        compress_(net, rec, data=train_ds)
        seconds = time.perf_counter() - t0
        # The baseline is timed as the reference inside the second measure.
        before, after = measure(base, test, latency=False), measure(net, test, reference=base, onnx=onnx)
        print_table(f"compressed in {seconds:.1f} s", ["figure", "before", "after"], comparison_rows(before, after),
                    console)
        for note in after.notes:
            console.print(f"[yellow]note:[/] {note}")
        write_run(d, recipe=rec, model=net, before=before, after=after, seconds=seconds, header=invocation())
    console.print(f"wrote {out}/")
