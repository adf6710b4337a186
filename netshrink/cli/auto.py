"""`netshrink auto`: compress a zoo baseline, a user's model (package.module:factory, hf:DIR)
or a saved model to a size / latency budget at most `--max-drop` below it (points of
accuracy, or the `--metric`'s own units), choosing per layer; writes the resolved recipe.
`--methods gptq,embedding_bits`: the one-shot search (GPTQ bits per Linear, mean row width
per embedding table, no fine-tuning), e.g. a sentence encoder at `--metric fidelity_cosine`."""
from __future__ import annotations

import copy
import shlex
from typing import Optional

import typer

from netshrink.auto import Budget
from netshrink.auto import auto as run_auto
from netshrink.auto.outputs import CHOICE_HEADERS, choices_rows
from netshrink.cli import sources
from netshrink.cli.common import console, invocation
from netshrink.cli.compress import DATA_HELP, MODEL_HELP
from netshrink.cli.rundir import check_free, run_folder
from netshrink.errors import NetshrinkError
from netshrink.measure.tables import print_table
from netshrink.train.config import TrainConfig


def auto(model: Optional[str] = typer.Option(None, help=MODEL_HELP),
         weights: Optional[str] = typer.Option(None, help="weights for --model: .safetensors or a state_dict file"),
         input: Optional[str] = typer.Option(None, "--input", help="compress this .nshr model instead"),
         data: str = typer.Option("mnist5k", help=DATA_HELP + " (train: fine-tuning / calibration, test: "
                                  "verification)"),
         fold: int = typer.Option(0, help="fold (0-4) of a zoo dataset"),
         size: Optional[str] = typer.Option(None, help="file size budget, e.g. 200KB, 1.5MB, 64KiB"),
         latency: Optional[str] = typer.Option(None, help="latency budget, e.g. 2ms, 500us"),
         batch: int = typer.Option(1, help="batch size the latency budget is for"),
         max_drop: float = typer.Option(0.5, help="largest drop accepted: points of accuracy (or agreement), "
                                        "else the metric's units (fidelity_cosine 0.01: mean cosine >= 0.99)"),
         metric: Optional[str] = typer.Option(None, help="what the drop is measured in: accuracy, mse, "
                                              "fidelity_cosine, ... or package.module:function (default: auto)"),
         epochs: int = typer.Option(10, help="fine-tuning epochs after pruning (centroids: 3 more)"),
         methods: str = typer.Option("prune,kmeans", help="comma-separated: prune, kmeans, channels; or the "
                                     "one-shot gptq, embedding_bits (no fine-tuning)"),
         calib_size: int = typer.Option(1024, help="calibration samples each candidate is probed on"),
         uniform: bool = typer.Option(False, help="also build the uniform allocation at the same budget"),
         explore: int = typer.Option(1, help="if the budget is missed: looser budgets tried (x1.5 each)"),
         out: str = typer.Option(..., help="run folder to write"),
         force: bool = typer.Option(False, help="replace an existing run folder")):
    """Search per-layer sparsity and bits (and channel widths for a latency budget) under
    the budget, compress with fine-tuning, verify the saved file's bytes, the measured
    latency and the drop; writes recipe.toml (replayable with `netshrink compress`),
    choices.md, points.json, pareto.png and model.nshr."""
    budget = Budget.parse(size=size, latency=latency, batch=batch, max_drop=max_drop)
    metric_fn = sources.metric_option(metric)
    check_free(out, force)
    if epochs < 0:
        raise NetshrinkError(f"--epochs must be >= 0, got {epochs}")
    if calib_size < 1:
        raise NetshrinkError(f"--calib-size must be >= 1, got {calib_size}")
    base, train_ds, test = sources.model_and_data(model, weights, input, data, fold)
    res = run_auto(copy.deepcopy(base), train_ds, budget, eval_data=test, finetune=TrainConfig(epochs=epochs),
                   methods=[m.strip() for m in methods.split(",") if m.strip()], compare_uniform=uniform,
                   explore=explore, metric=metric_fn, calib_size=calib_size, log=console.print)
    src = " ".join(f"--{k} {shlex.quote(v)}" for k, v in (("model", model), ("weights", weights), ("input", input))
                   if v)
    where = "" if sources.is_import_spec(data) else f" --fold {fold}"
    reproduce = (f"netshrink compress {src} --data {shlex.quote(data)}{where} --recipe {shlex.quote(out)}/recipe.toml "
                 f"--out {shlex.quote(out)}/reproduce")
    with run_folder(out, force) as d:
        res.write(d, command=invocation(), reproduce=reproduce)
    rows = choices_rows(res)
    if rows:
        print_table("per-layer choices", CHOICE_HEADERS, rows, console)
    pp = res.unit == "pp"
    base_txt = f"{100 * res.baseline_acc:.2f} %" if pp else f"{res.metric} {res.baseline_acc:.4f}"
    print_table(f"points tried (baseline {base_txt}, dense fp32 {res.dense_bytes:,} B, "
                f"search {res.seconds:.0f} s)", ["point", "bytes", "ratio", f"drop {res.unit}", "latency (ms)", "meets"],
                [[p.label, f"{p.bytes:,}", f"{res.dense_bytes / p.bytes:.1f}x", f"{p.drop_pp:.2f}" if pp else f"{p.drop_pp:.4f}",
                  "" if p.latency_ms is None else f"{p.latency_ms:.3f}", "yes" if p.met else "no"]
                 for p in res.points], console)
    console.print(f"wrote {out}/ (recipe.toml, choices.md, points.json, pareto.png, model.nshr)")
    res.check()
