"""The `netshrink` command line.

Every user error (a bad recipe, an unknown method, a corrupt file, an existing
output) is one line on stderr and exit code 2 — never a traceback.
"""
from __future__ import annotations

import copy
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from netshrink.errors import NetshrinkError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compress trained PyTorch networks into models that are measurably smaller and faster.")
console = Console()
err_console = Console(stderr=True)


@app.command()
def demo(out: Optional[str] = typer.Option(None, help="run folder to write (default: a new runs/demo-<time>)"),
         force: bool = typer.Option(False, help="replace an existing run folder"),
         fold: int = typer.Option(0, help="mnist5k fold (0-4)")):
    """Baseline LeNet-300-100 on mnist5k, pruned to 90 %: a before/after table and a run folder."""
    from netshrink.demo import run_demo

    # A new folder per run: `make demo` twice never fails and never overwrites.
    run_demo(out or time.strftime("runs/demo-%Y%m%d-%H%M%S"), force, fold, console)


@app.command()
def train(model: str = typer.Option(..., help="zoo model, e.g. lenet300_100"),
          data: str = typer.Option(..., help="zoo dataset, e.g. mnist5k"),
          fold: int = typer.Option(0, help="fold (0-4)"),
          out: Optional[str] = typer.Option(None, help="also save the trained model to this .nshr file"),
          force: bool = typer.Option(False, help="overwrite --out")):
    """Train (or load from cache) a zoo baseline and print its figures."""
    from netshrink.artifact import save
    from netshrink.measure.report import measure
    from netshrink.measure.tables import print_table
    from netshrink.zoo import data as zoo_data
    from netshrink.zoo.baseline import baseline

    if out and Path(out).exists() and not force:
        raise NetshrinkError(f"output {out} already exists; pass --force to replace it")
    _, test = zoo_data.load(data, fold)
    net = baseline(model, data, fold)
    r = measure(net, test)
    print_table(f"{model} on {data} fold {fold}", ["figure", "value"], [list(x) for x in r.rows()], console)
    if out:
        save(net, out)
        console.print(f"saved {out}")


@app.command()
def compress(recipe: str = typer.Option(..., help="recipe TOML file"),
             out: str = typer.Option(..., help="run folder to write"),
             model: Optional[str] = typer.Option(None, help="zoo model (its cached baseline is compressed)"),
             data: str = typer.Option("mnist5k", help="zoo dataset for fine-tuning and measurement"),
             fold: int = typer.Option(0, help="fold (0-4)"),
             input: Optional[str] = typer.Option(None, "--input", help="compress this .nshr model instead"),
             onnx: bool = typer.Option(False, "--onnx", help="also time both models in ONNX Runtime"),
             force: bool = typer.Option(False, help="replace an existing run folder")):
    """Compress a model with a recipe: writes recipe.toml, report.json and model.nshr to --out."""
    from netshrink.artifact import load
    from netshrink.core.compress import compress_
    from netshrink.core.recipe import Recipe
    from netshrink.measure.report import measure
    from netshrink.measure.tables import comparison_rows, print_table
    from netshrink.rundir import check_free, run_folder, write_run
    from netshrink.zoo import data as zoo_data
    from netshrink.zoo.baseline import baseline

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


@app.command()
def methods():
    """List every registered method with one line."""
    from netshrink.core.registry import all_methods
    from netshrink.measure.tables import print_table

    print_table("methods", ["name", "what it does"], [[n, c.summary] for n, c in all_methods().items()], console)


@app.command()
def inspect(file: str = typer.Argument(..., help=".nshr file")):
    """Per tensor: encoding, bits per weight and bytes; totals against dense fp32; every
    entropy-coded stream against its empirical Shannon bound."""
    from netshrink.codec import inspect_archive, read_archive
    from netshrink.measure.tables import print_table

    if not Path(file).is_file():
        raise NetshrinkError(f"{file}: no such file")
    header, _ = read_archive(file)
    rows = inspect_archive(file)
    tensors = [r for r in rows if r["name"] != "(total)"]
    total = next((r for r in rows if r["name"] == "(total)"), None)
    factory = header.get("factory", {})
    table = [[r["name"], "x".join(map(str, r["shape"])) or "scalar", r["dtype"], r["encoding"], f"{r['bytes']:,}",
              f"{r['bits_per_weight']:.2f}", f"{r['ratio']:.1f}x"] for r in tensors]
    if total:
        table.append(["total (+ header %s B)" % f"{total.get('header_bytes', 0):,}", "", "", "",
                      f"{total['bytes']:,}", f"{total['bits_per_weight']:.2f}", f"{total['ratio']:.1f}x"])
    print_table(f"{file}: model {factory.get('name')}, {len(header.get('edits', []))} architecture edits, "
                f"{Path(file).stat().st_size:,} bytes", ["tensor", "shape", "dtype", "encoding", "bytes",
                                                         "bits/weight", "vs fp32"], table, console)
    coded = [(r["name"], st) for r in tensors for st in r.get("streams", []) if st["coder"] in ("huffman", "ans")]
    if coded:
        print_table("entropy-coded streams vs their empirical (order-0) Shannon bound",
                    ["stream", "coder", "symbols", "bytes", "Shannon bound", "over bound"],
                    [[f"{n}:{st['stream']}", st["coder"], f"{st['symbols']:,}", f"{st['bytes']:,}",
                      f"{st['shannon_bytes']:,.0f}",
                      f"{100 * (st['bytes'] / st['shannon_bytes'] - 1):+.2f} %" if st["shannon_bytes"] else ""]
                     for n, st in coded], console)


@app.command()
def bench(suite: str = typer.Argument(..., help="suite name (see `netshrink bench list`)"),
          quick: bool = typer.Option(False, help="one fold, short budgets: a smoke check"),
          out: str = typer.Option("benchmarks", help="folder for results, tables and plots")):
    """Run a benchmark suite: results (JSON lines), tables and plots in benchmarks/, and BENCHMARKS.md."""
    from netshrink_bench.registry import run_suite

    run_suite(suite, quick=quick, out=out, console=console)


@app.command()
def export(file: str = typer.Argument(..., help=".nshr file"),
           onnx: bool = typer.Option(False, "--onnx", help="export to ONNX (verified with ONNX Runtime)"),
           out: Optional[str] = typer.Option(None, help="output file (default: FILE with .onnx)"),
           data: Optional[str] = typer.Option(None, help="zoo dataset whose input shape to export with")):
    """Export a model to ONNX, check it against PyTorch in ONNX Runtime, and time both."""
    from netshrink.artifact.onnx import export_file

    if not onnx:
        raise NetshrinkError("choose a format: --onnx")
    r = export_file(file, out, data=data)
    console.print(f"wrote {r['path']} ({r['bytes']:,} bytes); ONNX Runtime matches PyTorch on {r['checked']} "
                  f"batches (max |diff| {r['max_abs_diff']:.2g}); batch-64 latency: torch {r['torch_ms_b64']:.2f} ms, "
                  f"ONNX Runtime {r['ort_ms_b64']:.2f} ms")


@app.command()
def sensitivity(model: str = typer.Option(..., help="zoo model, e.g. lenet300_100"),
                data: str = typer.Option(..., help="zoo dataset, e.g. mnist5k"),
                fold: int = typer.Option(0, help="fold (0-4)"),
                target: float = typer.Option(0.9, help="overall sparsity the derived allocation must reach"),
                sparsities: str = typer.Option("0.5,0.7,0.8,0.9,0.95,0.98,0.99", help="comma-separated sparsities"),
                out: str = typer.Option("runs/sensitivity", help="run folder to write"),
                force: bool = typer.Option(False, help="replace an existing run folder")):
    """Accuracy vs sparsity of each layer pruned alone (on a validation split of the
    training fold), a plot, and the per-layer allocation as a ready recipe."""
    from netshrink.analysis.sensitivity import sensitivity as run_sensitivity
    from netshrink.core.recipe import Recipe
    from netshrink.core.registry import create
    from netshrink.measure.plots import line_plot
    from netshrink.measure.tables import print_table
    from netshrink.rundir import check_free, run_folder, write_run
    from netshrink.zoo import data as zoo_data
    from netshrink.zoo.baseline import baseline

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
    recipe = Recipe.of(create("magnitude", sparsity=target, sparsity_map=alloc))
    with run_folder(out, force) as d:
        (d / "sensitivity.json").write_text(json.dumps({**res.to_dict(), "allocation": alloc,
                                                        "overall": res.overall(alloc)}, indent=2))
        line_plot(d / "sensitivity.png", {k: ([100 * s for s in levels], [100 * a for a in v])
                                           for k, v in res.curves.items()},
                  xlabel="sparsity of that layer alone (%)", ylabel="validation accuracy (%)",
                  title=f"{model} on {data}: per-layer sensitivity", baseline=100 * res.baseline)
        command = invocation()
        (d / "recipe.toml").write_text(recipe.to_toml(
            f"{command}\nper-layer allocation from sensitivity; overall sparsity {100 * res.overall(alloc):.2f} %"))
    console.print(f"wrote {out}/ (sensitivity.json, sensitivity.png, recipe.toml: overall "
                  f"{100 * res.overall(alloc):.2f} % sparse)")


_ARGV: list[str] = []


def invocation() -> str:
    """The command line that is running, for the headers of the files it writes."""
    return "netshrink " + " ".join(shlex.quote(a) for a in _ARGV)


def main(argv: list[str] | None = None) -> int:
    _ARGV[:] = list(sys.argv[1:] if argv is None else argv)
    cmd = typer.main.get_command(app)
    try:
        rc = cmd.main(args=argv, prog_name="netshrink", standalone_mode=False)
        if isinstance(rc, int):  # --help and click's own exits
            return rc
    except NetshrinkError as e:
        err_console.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        return 2
    except typer.Abort:
        err_console.print("interrupted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted; earlier outputs are left as they were")
        return 130
    except typer.exceptions.TyperException as e:  # usage errors (typer vendors its own click)
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `netshrink`: the help, exit 0
            e.show()
            return 0
        e.show()
        return getattr(e, "exit_code", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
