"""measure(): one dataclass of honest figures, as a table or JSON.

Sizes are real: `file_bytes` is the size of the artifact `save()` writes, counted on
disk. The storage ratio divides the *reference's* dense fp32 bytes by it. Speedups are
ratios against the reference timed in the same process. A report says plainly when a
"compressed" model is neither smaller on disk nor faster.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from dataclasses import dataclass, field

import torch
from torch import nn

from netshrink.measure.counts import dense_zero_count, param_counts
from netshrink.measure.flops import count_flops
from netshrink.measure.latency import compare_latency, latency_ms
from netshrink.measure.units import removable_units, summary
from netshrink.train.loop import evaluate


@dataclass
class Report:
    accuracy: float | None = None          # on labelled data (fidelity if `metric` says so)
    metric: str = "accuracy"
    params: int = 0                        # parameters (dense count of the architecture)
    nonzeros: int = 0
    dense_bytes: int = 0                   # reference params x 4 bytes
    file_bytes: int | None = None          # size of the saved .nshr file
    storage_ratio: float | None = None     # dense_bytes / file_bytes
    bits_per_param: float | None = None    # 8 x file_bytes / reference params
    flops_dense: int = 0
    flops_effective: int = 0
    latency_ms: dict = field(default_factory=dict)   # {"b1": ms, "b64": ms}
    reference_latency_ms: dict = field(default_factory=dict)
    speedup: dict = field(default_factory=dict)      # reference ms / model ms
    onnx_latency_ms: dict = field(default_factory=dict)   # the same, in ONNX Runtime (measure(onnx=True))
    onnx_reference_latency_ms: dict = field(default_factory=dict)
    onnx_speedup: dict = field(default_factory=dict)
    reference_accuracy: float | None = None
    notes: list = field(default_factory=list)
    # per layer: units / dead_units / inputs / dead_inputs (all-zero weights; see measure.units)
    removable_units: dict = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        return 1 - self.nonzeros / max(self.params, 1)

    def summary(self, baseline: "Report | None" = None) -> str:
        """One line for a recipe's `result:` header."""
        parts = [f"{self.metric} {100 * self.accuracy:.2f} %"]
        if baseline is not None and baseline.accuracy is not None:
            parts[0] += f" (baseline {100 * baseline.accuracy:.2f} %)"
        parts.append(f"{100 * self.sparsity:.1f} % sparse")
        if self.file_bytes:
            parts.append(f"{self.file_bytes:,} bytes on disk, storage ratio {self.storage_ratio:.1f}x")
        else:
            parts.append("not savable")
        for b, s in self.speedup.items():
            parts.append(f"speedup {b} {s:.2f}x")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["sparsity"] = self.sparsity
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def rows(self) -> list[tuple[str, str]]:
        """(figure, value) pairs for a table."""
        rows = []
        if self.accuracy is not None:
            rows.append((self.metric, f"{100 * self.accuracy:.2f} %"))
        if self.reference_accuracy is not None:
            rows.append(("reference " + self.metric, f"{100 * self.reference_accuracy:.2f} %"))
        rows += [("parameters", f"{self.params:,}"), ("non-zeros", f"{self.nonzeros:,} ({100 * self.sparsity:.1f} % sparse)"),
                 ("dense fp32 bytes", f"{self.dense_bytes:,}")]
        if self.file_bytes is not None:
            rows += [("file bytes", f"{self.file_bytes:,}"), ("storage ratio", f"{self.storage_ratio:.1f}x"),
                     ("bits / parameter", f"{self.bits_per_param:.2f}")]
        rows += [("FLOPs dense", f"{self.flops_dense:,}"), ("FLOPs effective", f"{self.flops_effective:,}")]
        for b, ms in self.latency_ms.items():
            s = f"{ms:.3f} ms"
            if b in self.speedup:
                s += f" (speedup {self.speedup[b]:.2f}x vs {self.reference_latency_ms[b]:.3f} ms)"
            rows.append((f"latency {b}", s))
        for b, ms in self.onnx_latency_ms.items():
            s = f"{ms:.3f} ms"
            if b in self.onnx_speedup:
                s += f" (speedup {self.onnx_speedup[b]:.2f}x vs {self.onnx_reference_latency_ms[b]:.3f} ms)"
            rows.append((f"ONNX Runtime latency {b}", s))
        if summary(self.removable_units):
            rows.append(("removable (all-zero) units", summary(self.removable_units)))
        rows += [("note", n) for n in self.notes]
        return rows

    def __str__(self) -> str:
        w = max(len(k) for k, _ in self.rows())
        return "\n".join(f"{k:<{w}}  {v}" for k, v in self.rows())


def _file_size(model: nn.Module) -> int | None:
    from netshrink.artifact import save

    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.nshr")
        save(model, p)
        return os.path.getsize(p)


def _example(data, batch: int) -> torch.Tensor:
    xs = [data[i][0] for i in range(min(batch, len(data)))]
    while len(xs) < batch:
        xs += xs[: batch - len(xs)]
    return torch.stack(xs)


def measure(model: nn.Module, data, *, reference: nn.Module | None = None, batch_sizes=(1, 64),
            latency: bool = True, size: bool = True, fidelity: bool = False, onnx: bool = False) -> Report:
    """Measure `model` on `data` (a labelled Dataset), against `reference` if given.

    >>> print(ns.measure(model, test, reference=baseline))
    """
    r = Report()
    r.accuracy = evaluate(model, data, reference if fidelity else None)
    if fidelity:
        r.metric = "fidelity"
    r.params, r.nonzeros = param_counts(model)
    ref_params = param_counts(reference)[0] if reference is not None else r.params
    r.dense_bytes = 4 * ref_params
    if reference is not None and not fidelity:
        r.reference_accuracy = evaluate(reference, data)
    if size:
        try:
            r.file_bytes = _file_size(model)
        except Exception as e:  # a model we cannot save is reported, not hidden
            r.notes.append(f"not savable: {e}")
        if r.file_bytes:
            r.storage_ratio = r.dense_bytes / r.file_bytes
            r.bits_per_param = 8 * r.file_bytes / ref_params
    r.flops_dense, r.flops_effective = count_flops(model, _example(data, 1))
    r.removable_units = removable_units(model)
    if latency:
        for b in batch_sizes:
            x = _example(data, b)
            if reference is not None:
                ms, ref_ms = compare_latency(model, reference, x)
                r.reference_latency_ms[f"b{b}"] = ref_ms
                r.speedup[f"b{b}"] = ref_ms / ms
            else:
                ms = latency_ms(model, x)
            r.latency_ms[f"b{b}"] = ms
    if onnx:
        _onnx_latency(r, model, reference, data, batch_sizes)
    _honesty_notes(r, dense_zero_count(model))
    return r


def _onnx_latency(r: Report, model, reference, data, batch_sizes) -> None:
    """ONNX Runtime latency beside torch's: both models exported (and verified
    against PyTorch) and timed interleaved in this process."""
    from netshrink.runtime.onnx_export import compare_ort_latency, export_onnx, ort_latency_ms

    try:
        for b in batch_sizes:
            x = _example(data, max(b, 2))[:b] if b > 1 else _example(data, 2)[:1]
            if reference is not None:
                ms, ref_ms = compare_ort_latency(model, reference, x)
                r.onnx_reference_latency_ms[f"b{b}"] = ref_ms
                r.onnx_speedup[f"b{b}"] = ref_ms / ms
            else:
                with tempfile.TemporaryDirectory() as d:
                    path = os.path.join(d, "m.onnx")
                    export_onnx(model, _example(data, 2), path)
                    ms = ort_latency_ms(path, x)
            r.onnx_latency_ms[f"b{b}"] = ms
    except Exception as e:  # a model ONNX cannot express is reported, not hidden
        r.notes.append(f"no ONNX Runtime timing: {e}")


def _honesty_notes(r: Report, dense_zeros: int) -> None:
    if dense_zeros > 0.01 * r.params:
        r.notes.append(f"{dense_zeros:,} zeros are stored in dense layers and multiplied at run time: "
                       "they save bytes on disk, not FLOPs")
    if r.storage_ratio is not None and r.storage_ratio < 1.05:
        r.notes.append("the file is not smaller than the dense fp32 model")
    if r.speedup and max(r.speedup.values()) < 1.05:
        r.notes.append("not faster than the reference")
