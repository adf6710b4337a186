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

from netshrink.artifact import save
from netshrink.measure.counts import dense_zero_count, param_counts
from netshrink.measure.flops import count_flops
from netshrink.measure.latency import compare_latency, latency_ms
from netshrink.runtime.onnx_export import compare_ort_latency, export_onnx, ort_latency_ms
from netshrink.measure.dead_neurons import removable_units, summary
from netshrink.core.batches import Inputs, as_batches, batch_len
from netshrink.measure import metrics
from netshrink.train.loop import predict_positions


@dataclass
class Report:
    accuracy: float | None = None          # the metric's value when it is a fraction (accuracy, agreement)
    metric: str = "accuracy"               # what was measured (measure/metrics.py): accuracy, mse, fidelity_cosine ...
    metric_value: float | None = None      # its value, whatever its kind
    reference_metric_value: float | None = None
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
    # per layer: units / dead_units / inputs / dead_inputs (all-zero weights; see measure.dead_neurons)
    removable_units: dict = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        return 1 - self.nonzeros / max(self.params, 1)

    def summary(self, baseline: "Report | None" = None) -> str:
        """One line for a recipe's `result:` header."""
        v = self.task_value
        parts = [f"{self.metric} {self.format_value(v)}" if v is not None else "no task metric"]
        if baseline is not None and baseline.task_value is not None:
            parts[0] += f" (baseline {self.format_value(baseline.task_value)})"
        parts.append(f"{100 * self.sparsity:.1f} % sparse")
        if self.file_bytes:
            parts.append(f"{self.file_bytes:,} bytes on disk, storage ratio {self.storage_ratio:.1f}x")
        else:
            parts.append("not savable")
        for b, s in self.speedup.items():
            parts.append(f"speedup {b} {s:.2f}x")
        return ", ".join(parts)

    @property
    def task_value(self):
        return self.metric_value if self.metric_value is not None else self.accuracy

    def format_value(self, v: float) -> str:
        if self.metric in ("accuracy", "fidelity", "fidelity_top1", "fidelity_top5"):
            return f"{100 * v:.2f} %"
        return f"{v:.4g}"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["sparsity"] = self.sparsity
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def rows(self) -> list[tuple[str, str]]:
        """(figure, value) pairs for a table."""
        rows = []
        if self.task_value is not None:
            rows.append((self.metric, self.format_value(self.task_value)))
        ref = self.reference_metric_value if self.reference_metric_value is not None else self.reference_accuracy
        if ref is not None:
            rows.append(("reference " + self.metric, self.format_value(ref)))
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
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "m.nshr")
        save(model, p)
        return os.path.getsize(p)


def _example(data, batch: int):
    """`batch` samples of inputs (repeated when the data has fewer): a tensor for a
    one-tensor model, else a core.batches.Inputs."""
    b = as_batches(data)
    ex = b.example_inputs(batch)
    n = batch_len(list(ex.tensors())) or batch
    if n < batch:   # (n, ...) -> (batch, ...) by repeating the first samples
        rep = -(-batch // n)
        grow = lambda t: torch.cat([t] * rep)[:batch] if isinstance(t, torch.Tensor) and t.dim() else t
        ex = Inputs(tuple(grow(a) for a in ex.args), {k: grow(v) for k, v in ex.kwargs.items()})
    if len(ex.args) == 1 and not ex.kwargs:
        return ex.args[0]
    return ex


def _task_metric(r: Report, model, reference, data, metric) -> None:
    """r.metric / metric_value (and accuracy for fractions) of model and reference."""
    out, y, mask = predict_positions(model, data)
    hidden = metrics.is_hidden_state(model, data)
    ref_out = predict_positions(reference, data)[0] if reference is not None else None
    name = metrics.choose(metric, out, y, has_reference=reference is not None, hidden=hidden)
    if name is None:
        r.metric = "none"
        r.notes.append("no task metric: the data has no targets and there is no reference model to compare with")
        return
    r.metric = name
    r.metric_value = metrics.compute(name, metric, out, y, ref_out, mask)
    if y is not None and reference is not None and (callable(metric) or name in metrics.TARGET_METRICS):
        r.reference_metric_value = metrics.compute(name, metric, ref_out, y, None)
    if name in ("accuracy", "fidelity_top1", "fidelity_top5"):
        r.accuracy = r.metric_value
        if r.reference_metric_value is not None:
            r.reference_accuracy = r.reference_metric_value


def measure(model: nn.Module, data, *, reference: nn.Module | None = None, batch_sizes=(1, 64),
            latency: bool = True, size: bool = True, fidelity: bool = False, onnx: bool = False,
            metric="auto", forward=None, target=None, n_inputs: int | None = None) -> Report:
    """Measure `model` on `data` (anything core.batches reads; `forward`, `target`,
    `n_inputs` are its batch rules), against `reference` if given.

    metric: "auto" (accuracy for classification only, MSE for float targets, fidelity to
    `reference` for unlabelled data), a name from measure/metrics.py, or a callable
    `metric(outputs, targets) -> float`. fidelity=True: top-1 agreement with `reference`,
    reported as "fidelity".

    >>> print(ns.measure(model, test, reference=baseline))
    """
    data = as_batches(data, forward=forward, target=target, n_inputs=n_inputs)
    r = Report()
    _task_metric(r, model, reference, data, "fidelity_top1" if fidelity else metric)
    if fidelity:
        r.metric = "fidelity"
    r.params, r.nonzeros = param_counts(model)
    ref_params = param_counts(reference)[0] if reference is not None else r.params
    r.dense_bytes = 4 * ref_params
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
    """ONNX Runtime latency beside torch's: both models exported (and verified against
    PyTorch) and timed interleaved in this process. Any inputs the adapter reads: one
    tensor, several positional tensors, a dict of keyword tensors (ONNX inputs named
    after its keys). A model ONNX cannot express gets one note saying why."""
    try:
        small = _example(data, 2)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "m.onnx")
            if reference is None:
                export_onnx(model, small, path)
            for b in batch_sizes:
                x = _first(_example(data, max(b, 2)), b)
                if reference is not None:
                    ms, ref_ms = compare_ort_latency(model, reference, x)
                    r.onnx_reference_latency_ms[f"b{b}"] = ref_ms
                    r.onnx_speedup[f"b{b}"] = ref_ms / ms
                else:
                    ms = ort_latency_ms(path, x)
                r.onnx_latency_ms[f"b{b}"] = ms
    except Exception as e:  # a model ONNX cannot express is reported, not hidden
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        r.notes.append(f"no ONNX Runtime timing: {msg}")


def _first(x, n: int):
    """The first `n` samples of an example (a tensor or a core.batches.Inputs)."""
    return x.take(n) if isinstance(x, Inputs) else x[:n]


def _honesty_notes(r: Report, dense_zeros: int) -> None:
    if dense_zeros > 0.01 * r.params:
        r.notes.append(f"{dense_zeros:,} zeros are stored in dense layers and multiplied at run time: "
                       "they save bytes on disk, not FLOPs")
    if r.storage_ratio is not None and r.storage_ratio < 1.05:
        r.notes.append("the file is not smaller than the dense fp32 model")
    if r.speedup and max(r.speedup.values()) < 1.05:
        r.notes.append("not faster than the reference")
