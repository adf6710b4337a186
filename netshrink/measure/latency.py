"""Latency: torch.utils.benchmark (warm-up, blocked autorange, median), threads fixed.

Speed claims are ratios: the compressed model and its reference are timed in the
same process, interleaved, so that machine load affects both alike.
"""
from __future__ import annotations

import time
from typing import Literal

import torch
import torch.utils.benchmark as benchmark
from torch import nn

from netshrink.core.batches import example_inputs, model_device, model_dtype


@torch.no_grad()
def latency_ms(model: nn.Module, example, *, min_run_time: float = 0.3,
               threads: int | None = None) -> float:
    """Median milliseconds of one forward pass on `example` (a tensor, a tuple of tensors
    or a core.batches.Inputs)."""
    ex = example_inputs(example).to(model_device(model), model_dtype(model))
    was = model.training
    model.eval()
    threads = threads or torch.get_num_threads()
    t = benchmark.Timer(stmt="model(*args, **kwargs)",
                        globals={"model": model, "args": ex.args, "kwargs": ex.kwargs}, num_threads=threads)
    m = t.blocked_autorange(min_run_time=min_run_time)
    model.train(was)
    return m.median * 1e3


@torch.no_grad()
def cpu_ms(model: nn.Module, example, *, budget_s: float = 0.05) -> float:
    """CPU milliseconds per forward pass (time.process_time over calls filling `budget_s`
    of CPU time). With one intra-op thread this is the model's own work: on a shared,
    overloaded machine wall-clock time also counts the waits for a free core."""
    ex = example_inputs(example).to(model_device(model), model_dtype(model))
    was = model.training
    model.eval()
    n, t0 = 0, time.process_time()
    while n == 0 or time.process_time() - t0 < budget_s:
        model(*ex.args, **ex.kwargs)
        n += 1
    model.train(was)
    return 1e3 * (time.process_time() - t0) / n


def compare_latency(model: nn.Module, reference: nn.Module, example: torch.Tensor, *,
                    rounds: int = 3, min_run_time: float = 0.2,
                    clock: Literal["wall", "cpu"] = "wall") -> tuple[float, float]:
    """(model ms, reference ms): the median over interleaved rounds of each. clock "cpu":
    CPU time per call (`cpu_ms`, after one warm-up call each), for one-thread timing on a
    machine that other jobs share; "wall": torch.utils.benchmark's blocked autorange."""
    if clock == "cpu":
        cpu_ms(model, example, budget_s=0.0)
        cpu_ms(reference, example, budget_s=0.0)
    time_one = (lambda m: cpu_ms(m, example, budget_s=min_run_time)) if clock == "cpu" else \
        (lambda m: latency_ms(m, example, min_run_time=min_run_time))
    a, b = [], []
    for _ in range(rounds):
        b.append(time_one(reference))
        a.append(time_one(model))
    return sorted(a)[len(a) // 2], sorted(b)[len(b) // 2]
