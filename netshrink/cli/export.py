"""`netshrink export FILE --onnx`: ONNX, verified against PyTorch in ONNX Runtime, and timed."""
from __future__ import annotations

from typing import Optional

import typer

from netshrink.cli.common import console
from netshrink.errors import NetshrinkError
from netshrink.cli.onnx_file import export_file


def export(file: str = typer.Argument(..., help=".nshr file"),
           onnx: bool = typer.Option(False, "--onnx", help="export to ONNX (verified with ONNX Runtime)"),
           out: Optional[str] = typer.Option(None, help="output file (default: FILE with .onnx)"),
           data: Optional[str] = typer.Option(None, help="zoo dataset whose input shape to export with")):
    """Export a model to ONNX, check it against PyTorch in ONNX Runtime, and time both."""
    if not onnx:
        raise NetshrinkError("choose a format: --onnx")
    r = export_file(file, out, data=data)
    console.print(f"wrote {r['path']} ({r['bytes']:,} bytes); ONNX Runtime matches PyTorch on {r['checked']} "
                  f"batches (max |diff| {r['max_abs_diff']:.2g}); batch-64 latency: torch {r['torch_ms_b64']:.2f} ms, "
                  f"ONNX Runtime {r['ort_ms_b64']:.2f} ms")
