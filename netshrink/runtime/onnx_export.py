"""ONNX export, verified against PyTorch with ONNX Runtime, and ORT latency.

    info = export_onnx(model, example, "model.onnx")    # raises if ORT disagrees
    ms = ort_latency_ms("model.onnx", example64)

Export uses torch's TorchScript-based exporter (`dynamo=False`: the torch.export one
needs onnxscript, which we do not ship), with a dynamic batch axis. Verification runs
the file in ONNX Runtime on the example and on a second batch of another size and
compares with the model's own outputs. CSR-sparse layers (no ONNX operator computes
them) are written as dense layers with the same weights, and the result says so.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from netshrink.core.submodules import set_submodule
from netshrink.core.batches import Inputs, output_tensor
from netshrink.errors import NetshrinkError
from netshrink.runtime.sparse_conv import SparseConv2d
from netshrink.runtime.sparse_linear import SparseLinear


@dataclass
class OnnxExport:
    path: str
    max_abs_diff: float
    checked: int        # input batches compared
    bytes: int
    opset: int
    densified: list = field(default_factory=list)  # sparse modules written as dense ONNX ops


@contextlib.contextmanager
def onnx_ready(model: nn.Module):
    """Within this block, `model`'s CSR-sparse modules (no ONNX operator computes them)
    are dense nn.Linear / nn.Conv2d with the same weights; they are put back after.
    Yields the names of the modules densified."""
    swapped = []
    for name, m in list(model.named_modules()):
        if any(name.startswith(d + ".") for d, _ in swapped):
            continue
        if type(m).__name__ == "Int8Linear":
            raise NetshrinkError(f"onnx: module {name!r} (Int8Linear) runs torch's int8 kernels with dynamic "
                                 "activation quantization, which no ONNX operator reproduces exactly; export the "
                                 "model before `execute = \"int8\"` (its weights are on the int8 grid already)")
        if isinstance(m, SparseConv2d):
            w = m.matmul.dense_weight().reshape(m.out_channels, m.in_channels, *m.kernel_size)  # (out, in, kh, kw)
            dense = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.dilation,
                              bias=m.matmul.bias is not None)
            b = m.matmul.bias
        elif isinstance(m, SparseLinear):
            w, b = m.dense_weight(), m.bias  # (out, in)
            dense = nn.Linear(w.shape[1], w.shape[0], bias=b is not None)
        else:
            continue
        with torch.no_grad():
            dense.weight.copy_(w)
            if b is not None:
                dense.bias.copy_(b)
        set_submodule(model, name, dense.eval())
        swapped.append((name, m))
    try:
        yield [n for n, _ in swapped]
    finally:
        for name, m in swapped:
            set_submodule(model, name, m)


def _second_input(example):
    """Another batch (of another size, to exercise the dynamic axis): every tensor of
    `example` (a tensor or an Inputs) gets the same extra sample."""
    if isinstance(example, Inputs):
        return Inputs(tuple(_second_input(a) for a in example.args),
                      {k: _second_input(v) for k, v in example.kwargs.items()})
    if not isinstance(example, torch.Tensor) or example.dim() == 0:
        return example
    g = torch.Generator().manual_seed(1)
    x = torch.cat([example, example.flip(0)])[: example.shape[0] + 1]
    if x.is_floating_point():
        return x + 0.05 * torch.randn(x.shape, generator=g)
    return x


def as_inputs(example) -> Inputs:
    """A tensor, a tuple of tensors, a dict of keyword inputs (an HF batch) or an Inputs."""
    if isinstance(example, Inputs):
        return example
    if isinstance(example, Mapping):
        return Inputs((), dict(example))
    if isinstance(example, torch.Tensor):
        return Inputs((example,), {})
    if isinstance(example, tuple):
        return Inputs(example, {})
    raise NetshrinkError(f"onnx: an example input is a tensor, a tuple of tensors or a dict, "
                         f"not {type(example).__name__}")


def input_names(inputs: Inputs) -> list[str]:
    """ONNX input names: "input" (then input1, input2 ...) for positional tensors, the
    keyword for keyword tensors (input_ids, attention_mask, pixel_values ...)."""
    pos = ["input"] + [f"input{i}" for i in range(1, len(inputs.args))]
    return pos[: len(inputs.args)] + [k for k, v in inputs.kwargs.items() if isinstance(v, torch.Tensor)]


class _Flat(nn.Module):
    """`model` as ONNX sees it: tensors in (positional, then the keyword tensors in
    order), one tensor out (`output_tensor`: an HF model's logits / last hidden state).
    Keyword values that are not tensors are passed as constants."""

    def __init__(self, model: nn.Module, inputs: Inputs):
        super().__init__()
        self.model, self.n_args = model, len(inputs.args)
        self.keys = [k for k, v in inputs.kwargs.items() if isinstance(v, torch.Tensor)]
        self.const = {k: v for k, v in inputs.kwargs.items() if not isinstance(v, torch.Tensor)}

    def forward(self, *tensors):
        kw = dict(zip(self.keys, tensors[self.n_args:]), **self.const)
        return output_tensor(self.model(*tensors[: self.n_args], **kw))


def _feed(sess, inputs: Inputs) -> dict:
    tensors = [t for t in (*inputs.args, *(inputs.kwargs[k] for k in inputs.kwargs)) if isinstance(t, torch.Tensor)]
    return {i.name: t.numpy() for i, t in zip(sess.get_inputs(), tensors)}


def ort_session(path: str | os.PathLike, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def export_onnx(model: nn.Module, example, path: str | os.PathLike, *, verify: bool = True,
                atol: float = 1e-4, rtol: float = 1e-3, opset: int = 17) -> OnnxExport:
    """Export `model` to ONNX at `path` and check ONNX Runtime's outputs against torch's.
    `example`: a tensor, a tuple of tensors, a dict of keyword tensors (a Hugging Face
    batch: `model(**batch)`) or an Inputs; dim 0 of every input is the batch axis. The
    file's one output is the tensor `output_tensor` reads (an HF model's logits).

    >>> export_onnx(model, torch.zeros(2, 1, 28, 28), "m.onnx").max_abs_diff
    >>> export_onnx(bert, {"input_ids": ids, "attention_mask": mask}, "bert.onnx")
    """
    inputs = as_inputs(example)
    names = input_names(inputs)
    was = model.training
    model.eval()
    path = Path(path)
    fast = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # torch's fused Transformer kernels have no ONNX operator
    try:
        with warnings.catch_warnings(), torch.no_grad(), onnx_ready(model) as densified:
            warnings.simplefilter("ignore")
            torch.onnx.export(_Flat(model, inputs), tuple(inputs.tensors()), str(path), dynamo=False,
                              opset_version=opset, input_names=names, output_names=["output"],
                              dynamic_axes={n: {0: "batch"} for n in names + ["output"]})
    except NetshrinkError:
        raise
    except Exception as e:
        raise NetshrinkError(f"onnx: cannot export {type(model).__name__}: {type(e).__name__}: "
                             f"{str(e).splitlines()[0][:300]}") from None
    finally:
        torch.backends.mha.set_fastpath_enabled(fast)
        model.train(was)
    diff, n = 0.0, 0
    if verify:
        diff, n = verify_onnx(model, path, [inputs, _second_input(inputs)], atol=atol, rtol=rtol)
    return OnnxExport(path=str(path), max_abs_diff=diff, checked=n, bytes=path.stat().st_size, opset=opset,
                      densified=densified)


def verify_onnx(model: nn.Module, path, inputs: list, *, atol: float = 1e-4,
                rtol: float = 1e-3) -> tuple[float, int]:
    """Max |torch - ORT| over `inputs` (each as `export_onnx`'s example); raises
    NetshrinkError beyond atol + rtol*|torch|."""
    sess = ort_session(path)
    worst = 0.0
    was = model.training
    model.eval()
    try:
        for x in map(as_inputs, inputs):
            with torch.no_grad():
                ref = output_tensor(x.call(model)).numpy()
            got = sess.run(None, _feed(sess, x))[0]
            if got.shape != ref.shape:
                raise NetshrinkError(f"onnx: {path}: ONNX Runtime output shape {got.shape} != torch {ref.shape}")
            d = float(np.abs(got - ref).max()) if ref.size else 0.0
            worst = max(worst, d)
            if not np.allclose(got, ref, atol=atol, rtol=rtol):
                raise NetshrinkError(f"onnx: {path}: ONNX Runtime disagrees with PyTorch (max |diff| {d:.3g})")
    finally:
        model.train(was)
    return worst, len(inputs)


def ort_latency_ms(path, example: torch.Tensor, *, min_run_time: float = 0.3, threads: int | None = None,
                   sess=None) -> float:
    """Median ms of one ORT run on `example`: warm-up, then blocks of runs until
    `min_run_time` has passed (the discipline of torch.utils.benchmark)."""
    sess = sess or ort_session(path, threads)
    feed = _feed(sess, as_inputs(example))
    for _ in range(3):
        sess.run(None, feed)
    t0 = time.perf_counter()
    sess.run(None, feed)
    one = max(time.perf_counter() - t0, 1e-6)
    per_block = max(1, int(0.02 / one))  # blocks of ~20 ms, timed as a whole
    times, spent = [], 0.0
    while spent < min_run_time or len(times) < 5:
        t0 = time.perf_counter()
        for _ in range(per_block):
            sess.run(None, feed)
        dt = time.perf_counter() - t0
        times.append(dt / per_block)
        spent += dt
    return statistics.median(times) * 1e3


def compare_ort_latency(model: nn.Module, reference: nn.Module, example, *, rounds: int = 3,
                        min_run_time: float = 0.2) -> tuple[float, float]:
    """(model ms, reference ms) in ONNX Runtime, both exported here (verified), timed
    interleaved in this process; the median over rounds."""
    with tempfile.TemporaryDirectory() as d:
        a_path, b_path = Path(d) / "a.onnx", Path(d) / "b.onnx"
        small = as_inputs(example).take(2)
        export_onnx(model, small, a_path)
        export_onnx(reference, small, b_path)
        sa, sb = ort_session(a_path), ort_session(b_path)
        a, b = [], []
        for _ in range(rounds):
            b.append(ort_latency_ms(b_path, example, min_run_time=min_run_time, sess=sb))
            a.append(ort_latency_ms(a_path, example, min_run_time=min_run_time, sess=sa))
    return statistics.median(a), statistics.median(b)
