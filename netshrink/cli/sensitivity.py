"""`netshrink sensitivity`: each layer pruned alone, and a per-layer allocation as a recipe."""
from __future__ import annotations

import json
from typing import Optional

import typer

from netshrink import Recipe, create
from netshrink.analysis.sensitivity import sensitivity as run_sensitivity
from netshrink.cli import sources
from netshrink.cli.common import console, invocation
from netshrink.cli.rundir import check_free, run_folder
from netshrink.errors import NetshrinkError
from netshrink.measure.metrics import is_fraction
from netshrink.measure.plots import line_plot
from netshrink.measure.tables import print_table
from netshrink.zoo import data as zoo_data
from netshrink.zoo.baseline import baseline

MODEL_HELP = ("zoo model (its cached baseline), package.module:factory (your code, imported by its module "
              "name), or hf:DIR (a local transformers folder)")
DATA_HELP = ("zoo dataset (a validation split of the training fold), or package.module:function returning a "
             "Dataset / DataLoader / (train, held-out): the held-out part is measured")


def sensitivity(model: str = typer.Option(..., help=MODEL_HELP),
                data: str = typer.Option(..., help=DATA_HELP),
                weights: Optional[str] = typer.Option(None, help="weights for --model: .safetensors or a state_dict file"),
                fold: int = typer.Option(0, help="fold (0-4) of a zoo dataset"),
                metric: Optional[str] = typer.Option(None, help="metric: accuracy, mse, fidelity_cosine, ... or "
                                                     "package.module:function (default auto: accuracy for "
                                                     "classification, mse for float targets, fidelity to the "
                                                     "dense model without targets)"),
                higher_is_better: Optional[bool] = typer.Option(None, "--higher-is-better/--lower-is-better",
                                                                help="direction of your own --metric function"),
                target: float = typer.Option(0.9, help="overall sparsity the derived allocation must reach"),
                sparsities: str = typer.Option("0.5,0.7,0.8,0.9,0.95,0.98,0.99", help="comma-separated sparsities"),
                out: str = typer.Option("runs/sensitivity", help="run folder to write"),
                force: bool = typer.Option(False, help="replace an existing run folder")):
    """The task metric vs sparsity of each layer pruned alone (on held-out data), a plot,
    and the per-layer allocation as a ready recipe."""
    try:
        levels = [float(v) for v in sparsities.split(",") if v.strip()]
    except ValueError:
        raise NetshrinkError(f"--sparsities must be numbers separated by commas, got {sparsities!r}") from None
    if not levels or not all(0 <= v < 1 for v in levels):
        raise NetshrinkError(f"--sparsities must be in [0, 1), got {sparsities!r}")
    if not 0 <= target < 1:
        raise NetshrinkError(f"--target must be in [0, 1), got {target}")
    metric_fn = sources.metric_option(metric)
    check_free(out, force)
    if sources.is_import_spec(data):
        _, val = sources.user_data(data)
    else:
        _, val, _ = zoo_data.load(data, fold, validation=0.1)
    net = sources.user_model(model, weights).model if sources.is_user_model(model) else baseline(model, data, fold)
    res = run_sensitivity(net, val, sparsities=levels, metric=metric_fn, higher_is_better=higher_is_better)
    alloc = res.allocation(target)
    pct = is_fraction(res.metric)
    fmt = (lambda v: f"{100 * v:.1f}") if pct else (lambda v: f"{v:.4g}")
    unit = f"{res.metric} (%)" if pct else res.metric
    heads = ["layer", "weights"] + [f"{100 * s:g} %" for s in levels] + ["allocated"]
    rows = [[k, f"{res.sizes[k]:,}"] + [fmt(a) for a in res.curves[k]] + [f"{100 * alloc[k]:g} %"]
            for k in res.curves]
    where = f"{data} fold {fold}" if not sources.is_import_spec(data) else data
    direction = "" if res.higher_is_better else ", lower is better"
    print_table(f"{model} on {where}: held-out {unit} with one layer pruned "
                f"(dense {fmt(res.baseline)}{direction})", heads, rows, console)
    recipe = Recipe.of(create("magnitude", sparsity=target, per_layer=alloc))
    scale = 100 if pct else 1
    with run_folder(out, force) as d:
        (d / "sensitivity.json").write_text(json.dumps({**res.to_dict(), "allocation": alloc,
                                                        "overall": res.overall(alloc)}, indent=2))
        line_plot(d / "sensitivity.png", {k: ([100 * s for s in levels], [scale * a for a in v])
                                           for k, v in res.curves.items()},
                  xlabel="sparsity of that layer alone (%)", ylabel=f"held-out {unit}",
                  title=f"{model}: per-layer sensitivity", baseline=scale * res.baseline)
        (d / "recipe.toml").write_text(recipe.to_toml(
            f"{invocation()}\nper-layer allocation from sensitivity ({res.metric}); overall sparsity "
            f"{100 * res.overall(alloc):.2f} %"))
    console.print(f"wrote {out}/ (sensitivity.json, sensitivity.png, recipe.toml: overall "
                  f"{100 * res.overall(alloc):.2f} % sparse)")
