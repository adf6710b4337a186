"""Latency: torch.utils.benchmark (warm-up, blocked autorange, median), threads fixed.

Speed claims are ratios: the compressed model and its reference are timed in the
same process, interleaved, so that machine load affects both alike.
"""
from __future__ import annotations

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


def compare_latency(model: nn.Module, reference: nn.Module, example: torch.Tensor, *,
                    rounds: int = 3, min_run_time: float = 0.2) -> tuple[float, float]:
    """(model ms, reference ms): the median over interleaved rounds of each."""
    a, b = [], []
    for _ in range(rounds):
        b.append(latency_ms(reference, example, min_run_time=min_run_time))
        a.append(latency_ms(model, example, min_run_time=min_run_time))
    return sorted(a)[len(a) // 2], sorted(b)[len(b) // 2]
