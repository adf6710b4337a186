"""`netshrink sensitivity`: each layer pruned alone, and a per-layer allocation as a recipe."""
from __future__ import annotations

import json

import typer

from netshrink import Recipe, create
from netshrink.analysis.sensitivity import sensitivity as run_sensitivity
from netshrink.cli.common import console, invocation
from netshrink.cli.rundir import check_free, run_folder
from netshrink.errors import NetshrinkError
from netshrink.measure.plots import line_plot
from netshrink.measure.tables import print_table
from netshrink.zoo import data as zoo_data
from netshrink.zoo.baseline import baseline


def sensitivity(model: str = typer.Option(..., help="zoo model, e.g. lenet300_100"),
                data: str = typer.Option(..., help="zoo dataset, e.g. mnist5k"),
                fold: int = typer.Option(0, help="fold (0-4)"),
                target: float = typer.Option(0.9, help="overall sparsity the derived allocation must reach"),
                sparsities: str = typer.Option("0.5,0.7,0.8,0.9,0.95,0.98,0.99", help="comma-separated sparsities"),
                out: str = typer.Option("runs/sensitivity", help="run folder to write"),
                force: bool = typer.Option(False, help="replace an existing run folder")):
    """Accuracy vs sparsity of each layer pruned alone (on a validation split of the
    training fold), a plot, and the per-layer allocation as a ready recipe."""
    try:
        levels = [float(v) for v in sparsities.split(",") if v.strip()]
    except ValueError:
        raise NetshrinkError(f"--sparsities must be numbers separated by commas, got {sparsities!r}") from None
    if not levels or not all(0 <= v < 1 for v in levels):
        raise NetshrinkError(f"--sparsities must be in [0, 1), got {sparsities!r}")
    if not 0 <= target < 1:
        raise NetshrinkError(f"--target must be in [0, 1), got {target}")
    check_free(out, force)
    _, val, _ = zoo_data.load(data, fold, validation=0.1)
    net = baseline(model, data, fold)
    res = run_sensitivity(net, val, sparsities=levels)
    alloc = res.allocation(target)
    heads = ["layer", "weights"] + [f"{100 * s:g} %" for s in levels] + ["allocated"]
    rows = [[k, f"{res.sizes[k]:,}"] + [f"{100 * a:.1f}" for a in res.curves[k]] + [f"{100 * alloc[k]:g} %"]
            for k in res.curves]
    print_table(f"{model} on {data} fold {fold}: validation accuracy (%) with one layer pruned "
                f"(dense {100 * res.baseline:.2f} %)", heads, rows, console)
    recipe = Recipe.of(create("magnitude", sparsity=target, per_layer=alloc))
    with run_folder(out, force) as d:
        (d / "sensitivity.json").write_text(json.dumps({**res.to_dict(), "allocation": alloc,
                                                        "overall": res.overall(alloc)}, indent=2))
        line_plot(d / "sensitivity.png", {k: ([100 * s for s in levels], [100 * a for a in v])
                                           for k, v in res.curves.items()},
                  xlabel="sparsity of that layer alone (%)", ylabel="validation accuracy (%)",
                  title=f"{model} on {data}: per-layer sensitivity", baseline=100 * res.baseline)
        (d / "recipe.toml").write_text(recipe.to_toml(
            f"{invocation()}\nper-layer allocation from sensitivity; overall sparsity {100 * res.overall(alloc):.2f} %"))
    console.print(f"wrote {out}/ (sensitivity.json, sensitivity.png, recipe.toml: overall "
                  f"{100 * res.overall(alloc):.2f} % sparse)")
