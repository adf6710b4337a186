"""`netshrink export FILE --onnx`: load an artifact, export it to ONNX, verify it in
ONNX Runtime and time both. (The exporter itself is runtime/onnx_export.py; this
part reads files and guesses a zoo input shape, so it is CLI code, above the zoo.)
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from netshrink.artifact.io import load
from netshrink.errors import NetshrinkError
from netshrink.measure.latency import latency_ms
from netshrink.runtime.onnx_export import export_onnx, ort_latency_ms
from netshrink.zoo.bert import register_bert_tiny
from netshrink.zoo.data import input_shape


def example_for(model: nn.Module, data: str | None = None, batch: int = 2) -> torch.Tensor:
    """An input batch for `model`: its own `example_input`, else uniform [0, 1) values
    shaped like the zoo dataset `data` (or the first zoo input shape the model accepts)."""
    if hasattr(model, "example_input"):
        return model.example_input(batch)
    names = [data] if data else [n for n in [(getattr(model, "ns_meta", {}) or {}).get("baseline", {}).get("data")]
                                 if n] + ["mnist5k", "seqmnist", "digits", "mnist1d"]
    g = torch.Generator().manual_seed(0)
    model.eval()
    for name in names:
        try:
            x = torch.rand((batch, *input_shape(name)), generator=g)
        except KeyError:
            raise NetshrinkError(f"unknown dataset {name!r}; valid: mnist5k, seqmnist, digits, mnist1d") from None
        try:
            with torch.no_grad():
                model(x)
            return x
        except Exception:  # not this input shape; try the next
            continue
    raise NetshrinkError(f"no zoo input shape fits {type(model).__name__}; pass --data")


def export_file(file: str | os.PathLike, out: str | os.PathLike | None = None, *, data: str | None = None,
                force: bool = False) -> dict:
    """`netshrink export FILE --onnx`: load an artifact, export it, verify it, time it
    (batch 64, torch and ONNX Runtime)."""
    file = Path(file)
    if not file.is_file():
        raise NetshrinkError(f"{file}: no such file")
    out = Path(out) if out else file.with_suffix(".onnx")
    if out.exists() and not force:  # checked before any work
        raise NetshrinkError(f"output {out} already exists; pass --force to replace it")
    register_bert_tiny()  # BERT artifacts name this factory
    model = load(file).eval()
    x = example_for(model, data)
    info = export_onnx(model, x, out)
    big = torch.cat([x] * 32)[:64]
    return {"path": info.path, "bytes": info.bytes, "max_abs_diff": info.max_abs_diff, "checked": info.checked,
            "torch_ms_b64": latency_ms(model, big), "ort_ms_b64": ort_latency_ms(out, big)}
