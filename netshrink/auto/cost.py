"""Costs of per-layer choices, from the real thing.

Bytes: a candidate layer (its weight pruned by magnitude to a sparsity, then shared
by 1-D k-means over the non-zeros, as `gradual_magnitude` + `kmeans` leave it) is
encoded by the codec the artifact uses (`encode_bits`), so its cost is the bytes that
`save` will write for it, descriptor included. Everything that is not a searched
weight (biases, normalisation, the header) is a fixed overhead: the bytes of the
saved model minus the encoded bytes of its searched weights.

Latency: `measured_latency` times the whole model at the budget's batch size (median
of rounds; CPU time with one thread, torch.utils.benchmark otherwise).
"""
from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from netshrink.artifact import save
from netshrink.artifact.transformers_base import spec_of
from netshrink.codec import write_archive
from netshrink.codec.dtypes import to_bits
from netshrink.codec.encodings import encode_bits
from netshrink.functional.kmeans1d import kmeans1d, linear_init
from netshrink.functional.prune import keep_count
from netshrink.measure.latency import latency_ms
from netshrink.core.batches import example_inputs
from netshrink.core.factories import factory_of


@dataclass(frozen=True)
class Choice:
    """One per-layer option: magnitude sparsity, then k-means with 2**bits shared
    values over the non-zeros (bits None: the non-zeros stay float32). `method` names a
    one-shot method instead (auto/oneshot.py): "gptq" at `bits` per weight, or
    "embedding_bits" at a mean of `bits` per row (a float)."""

    sparsity: float
    bits: int | float | None
    method: str = ""

    @property
    def label(self) -> str:
        if self.method:
            return f"{self.method} {self.bits:g}b"
        b = "fp32" if self.bits is None else f"{self.bits}b"
        return f"{100 * self.sparsity:g}% sparse, {b}"

    @property
    def bits_label(self) -> str:
        """The bits column of a choices table: "fp32", "4", "gptq 5", "embedding_bits 3.5"."""
        if self.bits is None:
            return "fp32"
        return f"{self.method} {self.bits:g}" if self.method else f"{self.bits:g}"


def tensor_bytes(t: torch.Tensor) -> int:
    """The bytes the codec stores for `t` (payload + descriptor)."""
    t = t.detach().cpu().contiguous()
    enc = encode_bits(to_bits(t), grid_shape=tuple(t.shape) if t.dtype == torch.float32 else None)
    return int(enc.cost)


@torch.no_grad()
def prune_like(w: torch.Tensor, sparsity: float, order: torch.Tensor | None = None) -> torch.Tensor:
    """`w` with its smallest-|w| entries zeroed (as `topk_mask`: stable ties).
    order: argsort(|w|, descending, stable) when already computed (shared across levels)."""
    flat = w.detach().reshape(-1)
    if order is None:
        order = torch.argsort(flat.abs().float(), descending=True, stable=True)
    out = torch.zeros_like(flat)
    keep = order[:keep_count(flat.numel(), sparsity)]
    out[keep] = flat[keep]
    return out.reshape(w.shape)


@torch.no_grad()
def share_like(w: torch.Tensor, bits: int | None, iters: int = 100) -> torch.Tensor:
    """`w` with its non-zeros replaced by their k-means centroid (linear init), as the
    `kmeans` method clusters them before fine-tuning its centroids."""
    if bits is None:
        return w.clone()
    keep = w != 0
    values = w[keep]
    k = 2 ** bits
    init = linear_init(values, k=k) if values.numel() > k else None
    centroids, idx = kmeans1d(values, k=k, iters=iters, init=init)
    out = torch.zeros_like(w)
    if centroids.numel():
        out[keep] = centroids[idx]
    return out


def candidate(w: torch.Tensor, choice: Choice, order: torch.Tensor | None = None, iters: int = 100) -> torch.Tensor:
    return share_like(prune_like(w, choice.sparsity, order), choice.bits, iters=iters)


def file_bytes(model: nn.Module) -> int:
    """Bytes of the file `save` writes for a zoo or transformers model (a plain archive
    of the state for any other model: its header depends on the base given at load)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.nshr"
        if factory_of(model) is not None or spec_of(model) is not None:
            return save(model, path)
        return write_archive(path, {}, {k: v.detach().cpu() for k, v in model.state_dict().items()})


def overhead_bytes(model: nn.Module, weights: dict[str, torch.Tensor]) -> int:
    """File bytes that do not depend on the searched weights."""
    return file_bytes(model) - sum(tensor_bytes(w) for w in weights.values())


def measured_latency(model: nn.Module, example, *, rounds: int = 5, budget_s: float = 0.05) -> float:
    """Milliseconds of one forward pass on `example` (a tensor or a core.batches.Inputs,
    batch included): the median of `rounds` rounds. With one intra-op thread the clock is
    the process's CPU time, which on a shared machine counts only this model's work (wall
    time also counts the waits for a core); with more threads, torch.utils.benchmark's
    wall-clock median."""
    if torch.get_num_threads() > 1:
        return latency_ms(model, example, min_run_time=0.3)
    ex = example_inputs(example)
    was = model.training
    model.eval()
    with torch.no_grad():
        ex.call(model)   # warm-up
        times = []
        for _ in range(rounds):
            n, t0 = 0, time.process_time()
            while time.process_time() - t0 < budget_s:
                ex.call(model)
                n += 1
            times.append(1e3 * (time.process_time() - t0) / n)
    model.train(was)
    return sorted(times)[len(times) // 2]


def relative_latency(model: nn.Module, reference: nn.Module, example, *, rounds: int = 3,
                     reference_ms: float | None = None) -> float:
    """`model`'s ms, measured interleaved with `reference` and expressed at the machine speed
    of the moment `reference_ms` was measured: ms(model) x reference_ms / ms(reference),
    medians over `rounds`. A shared machine's speed drifts; the ratio to a reference timed
    beside it does not (the benchmark protocol's rule), so a budget in ms stays comparable."""
    a, b = [], []
    for _ in range(rounds):
        b.append(measured_latency(reference, example))
        a.append(measured_latency(model, example))
    ms, ref = sorted(a)[rounds // 2], sorted(b)[rounds // 2]
    return ms * (reference_ms / ref) if reference_ms else ms
