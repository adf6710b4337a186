"""`netshrink export FILE --onnx`: ONNX, verified against PyTorch in ONNX Runtime, and timed."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import typer

from netshrink.artifact import load
from netshrink.cli.onnx_file import export_file
from netshrink.cli import sources
from netshrink.cli.common import console
from netshrink.cli.rundir import check_free_file
from netshrink.core.batches import Inputs, as_batches
from netshrink.errors import NetshrinkError
from netshrink.measure.latency import latency_ms
from netshrink.runtime.onnx_export import export_onnx, ort_latency_ms


def export(file: str = typer.Argument(..., help=".nshr file"),
           onnx: bool = typer.Option(False, "--onnx", help="export to ONNX (verified with ONNX Runtime)"),
           out: Optional[str] = typer.Option(None, help="output file (default: FILE with .onnx)"),
           data: Optional[str] = typer.Option(None, help="zoo dataset, or package.module:function (your data), "
                                              "whose first batch gives the inputs to export with"),
           model: Optional[str] = typer.Option(None, help="for a file of your own model: its base, "
                                               "package.module:factory or hf:DIR"),
           force: bool = typer.Option(False, help="replace an existing output file")):
    """Export a model to ONNX, check it against PyTorch in ONNX Runtime, and time both."""
    if not onnx:
        raise NetshrinkError("choose a format: --onnx")
    if not Path(file).is_file():
        raise NetshrinkError(f"{file}: no such file")
    check_free_file(Path(out) if out else Path(file).with_suffix(".onnx"), force)   # before any work
    if model is None and not sources.is_import_spec(data):
        r = export_file(file, out, data=data, force=force)
    else:
        r = _export_user(file, out, model, data, force)
    console.print(f"wrote {r['path']} ({r['bytes']:,} bytes); ONNX Runtime matches PyTorch on {r['checked']} "
                  f"batches (max |diff| {r['max_abs_diff']:.2g}); batch-64 latency: torch {r['torch_ms_b64']:.2f} ms, "
                  f"ONNX Runtime {r['ort_ms_b64']:.2f} ms")


def _export_user(file: str, out: str | None, model: str | None, data: str | None, force: bool) -> dict:
    """A file saved from a user's model: loaded against its base, exported with inputs
    from the user's data."""
    path = Path(file)
    if not path.is_file():
        raise NetshrinkError(f"{file}: no such file")
    dest = Path(out) if out else path.with_suffix(".onnx")
    if dest.exists() and not force:
        raise NetshrinkError(f"output {dest} already exists; pass --force to replace it")
    if data is None or not sources.is_import_spec(data):
        raise NetshrinkError("export of your own model needs --data package.module:function for its inputs")
    base = sources.user_model(model).build() if model else None
    net = load(path, base=base).eval()
    ex = as_batches(sources.user_data(data)[1]).example_inputs(2)
    info = export_onnx(net, ex, dest)
    big = _repeat(ex, 64)
    return {"path": info.path, "bytes": info.bytes, "max_abs_diff": info.max_abs_diff, "checked": info.checked,
            "torch_ms_b64": latency_ms(net, big), "ort_ms_b64": ort_latency_ms(dest, big)}


def _repeat(ex: Inputs, n: int) -> Inputs:
    grow = lambda t: torch.cat([t] * -(-n // t.shape[0]))[:n] if isinstance(t, torch.Tensor) and t.dim() else t
    return Inputs(tuple(grow(a) for a in ex.args), {k: grow(v) for k, v in ex.kwargs.items()})
