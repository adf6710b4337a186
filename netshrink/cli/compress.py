"""`netshrink compress`: a recipe applied to a zoo baseline, a user's model or a saved
model, into a run folder."""
from __future__ import annotations

import copy
import time
from typing import Optional

import typer

from netshrink import Recipe, compress_
from netshrink.cli import sources
from netshrink.cli.common import console, invocation
from netshrink.cli.rundir import check_free, run_folder, write_run
from netshrink.errors import NetshrinkError
from netshrink.measure.report import measure
from netshrink.measure.tables import comparison_rows, print_table
from netshrink.train.engine import is_main_process

MODEL_HELP = ("zoo model (its cached baseline is compressed), package.module:factory (your code, imported by "
              "its module name), or hf:DIR (a local transformers folder); with --input: the base of that file")
DATA_HELP = "zoo dataset, or package.module:function returning a Dataset / DataLoader / (train, test)"


def compress(recipe: str = typer.Option(..., help="recipe TOML file"),
             out: str = typer.Option(..., help="run folder to write"),
             model: Optional[str] = typer.Option(None, help=MODEL_HELP),
             weights: Optional[str] = typer.Option(None, help="weights for --model: .safetensors or a state_dict file"),
             data: str = typer.Option("mnist5k", help=DATA_HELP),
             fold: int = typer.Option(0, help="fold (0-4) of a zoo dataset"),
             input: Optional[str] = typer.Option(None, "--input", help="compress this .nshr model instead"),
             loss: Optional[str] = typer.Option(None, help="fine-tuning loss: cross_entropy, mse, distill, ... "
                                                "or package.module:function (default: the recipe's)"),
             metric: Optional[str] = typer.Option(None, help="reported metric: accuracy, mse, fidelity_cosine, ... "
                                                  "or package.module:function (default: auto)"),
             onnx: bool = typer.Option(False, "--onnx", help="also time both models in ONNX Runtime"),
             latency: bool = typer.Option(True, "--latency/--no-latency",
                                          help="time both models (torch); --no-latency: sizes and metric only"),
             force: bool = typer.Option(False, help="replace an existing run folder")):
    """Compress a model with a recipe: writes recipe.toml, report.json and model.nshr to --out."""
    rec = Recipe.from_toml(recipe)          # fail fast, before any training
    loss_fn, metric_fn = sources.loss_option(loss), sources.metric_option(metric)
    check_free(out, force)
    base, train_ds, test = sources.model_and_data(model, weights, input, data, fold)
    net = copy.deepcopy(base)
    t0 = time.perf_counter()
    compress_(net, rec, data=train_ds, loss=loss_fn)
    seconds = time.perf_counter() - t0
    if not is_main_process():   # under torchrun: every process trained, rank 0 writes
        return
    with run_folder(out, force) as d:
        # The baseline is timed as the reference inside the second measure.
        # the baseline against itself: a fidelity metric needs a reference (it is 1 / 0 there)
        before = measure(base, test, reference=base, latency=False, metric=metric_fn)
        after = measure(net, test, reference=base, onnx=onnx, metric=metric_fn, latency=latency)
        print_table(f"compressed in {seconds:.1f} s", ["figure", "before", "after"], comparison_rows(before, after),
                    console)
        for note in after.notes:
            console.print(f"[yellow]note:[/] {note}")
        write_run(d, recipe=rec, model=net, before=before, after=after, seconds=seconds, header=invocation())
    console.print(f"wrote {out}/")
