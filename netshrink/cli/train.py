"""`netshrink train`: a zoo baseline (trained once, then cached) and its figures."""
from __future__ import annotations

from typing import Optional

import typer

from netshrink import save
from netshrink.cli.common import console
from netshrink.cli.rundir import check_free_file
from netshrink.measure.report import measure
from netshrink.measure.tables import print_table
from netshrink.zoo import data as zoo_data
from netshrink.zoo.baseline import baseline


def train(model: str = typer.Option(..., help="zoo model, e.g. lenet300_100"),
          data: str = typer.Option(..., help="zoo dataset, e.g. mnist5k"),
          fold: int = typer.Option(0, help="fold (0-4)"),
          out: Optional[str] = typer.Option(None, help="also save the trained model to this .nshr file"),
          force: bool = typer.Option(False, help="overwrite --out")):
    """Train (or load from cache) a zoo baseline and print its figures."""
    if out:   # before any work: exists, a file on the way, an unwritable folder
        check_free_file(out, force)
    _, test = zoo_data.load(data, fold)
    net = baseline(model, data, fold)
    r = measure(net, test)
    print_table(f"{model} on {data} fold {fold}", ["figure", "value"], [list(x) for x in r.rows()], console)
    if out:
        save(net, out)
        console.print(f"saved {out}")
