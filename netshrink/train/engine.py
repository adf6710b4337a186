"""Where and how fine-tuning runs: the model's device and dtype, mixed precision, and
data-parallel processes under `torchrun`, on HF Accelerate.

Why Accelerate (not Lightning Fabric): transformers, which netshrink already depends on,
is built around it, so a transformers user has it and its launcher config already; it
adds two small packages here (psutil; the rest are transformers' own dependencies), it
reads torchrun's environment itself (gloo on CPU, NCCL on CUDA, MPS), and its
`autocast` / `backward` / `prepare_model` cover exactly what our own loop needs while the
loop keeps the method hooks. Accelerate is used only where it adds something: a plain
single-process run in the model's own dtype needs no engine and moves nothing.

Data parallel, exactly: every process reads the same global batches (same seeds), keeps
its contiguous share `tensor_split(world)[rank]` and scales its mean loss by
`n_rank * world / n_global`; DDP's gradient average is then the gradient of the mean loss
over the whole global batch. So `torchrun --nproc-per-node P` with `batch_size = B` gives
the weights (to float rounding) of a single process with `batch_size = B`: the single-process
equivalent is the same recipe run without torchrun. (BatchNorm statistics are the exception:
each process sees its share; DDP broadcasts rank 0's buffers.)
"""
from __future__ import annotations

import contextlib
import os

import torch
from torch import nn

from netshrink.core.batches import batch_len, model_device
from netshrink.errors import NetshrinkError


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) outside it."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in the one process that should write files (rank 0, or no torchrun)."""
    return world()[0] == 0


class Engine:
    """One fine-tuning phase's execution: `prepare(model, opt)`, `autocast()`,
    `backward(loss)`, `shard(batch)`, `unwrap()`."""

    def __init__(self, model: nn.Module, precision: str = "model"):
        self.rank, self.world_size = world()
        self.device = model_device(model)
        self.precision = precision
        if precision == "fp16-mixed" and self.device.type == "cpu":
            raise NetshrinkError("precision 'fp16-mixed' needs a CUDA or MPS model; on CPU use 'bf16-mixed'")
        self.acc = None
        if self.world_size > 1 or precision != "model":
            self.acc = _accelerator(cpu=self.device.type == "cpu",
                                    mixed={"model": "no", "bf16-mixed": "bf16", "fp16-mixed": "fp16"}[precision])
        self._wrapped = None

    def prepare(self, model: nn.Module, optimizer):
        """The module to call in the loop (DDP-wrapped under torchrun) and the optimizer."""
        if self.acc is None:
            return model, optimizer
        if self.world_size > 1:
            if model_device(model) != self.acc.device:
                model.to(self.acc.device)
            self._wrapped = self.acc.prepare_model(model, device_placement=False)
            return self._wrapped, self.acc.prepare_optimizer(optimizer, device_placement=False)
        return model, self.acc.prepare_optimizer(optimizer, device_placement=False)

    def autocast(self):
        if self.acc is None or self.precision == "model":
            return contextlib.nullcontext()
        return self.acc.autocast()

    def backward(self, loss: torch.Tensor) -> None:
        if self.acc is None:
            loss.backward()
        else:
            self.acc.backward(loss)

    def shard(self, batch):
        """(this process's share of a global batch, loss scale). Outside torchrun the
        batch itself and 1.0; a batch without tensors is not split."""
        if self.world_size == 1:
            return batch, 1.0
        n = batch_len(batch)
        if n is None:
            return batch, 1.0
        part = _split(batch, self.rank, self.world_size, n)
        k = batch_len(part) or 0
        return part, k * self.world_size / n

    def unwrap(self, model: nn.Module) -> nn.Module:
        if self._wrapped is not None:
            self.acc.unwrap_model(self._wrapped, keep_fp32_wrapper=False)
            self._wrapped = None
        return model

    def barrier(self) -> None:
        if self.acc is not None and self.world_size > 1:
            self.acc.wait_for_everyone()


_ACC: dict = {}


def _accelerator(cpu: bool, mixed: str):
    """One Accelerator per (cpu, precision) per process: Accelerate keeps its state in a
    process-wide singleton, so a second phase with other settings resets it first."""
    try:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState, GradientState
        from accelerate.utils import DistributedDataParallelKwargs
    except ImportError as e:  # pragma: no cover - a main dependency
        raise NetshrinkError(f"mixed precision and torchrun need HF Accelerate: {e}") from None
    key = (cpu, mixed)
    if key not in _ACC:
        if _ACC:
            AcceleratorState._reset_state(reset_partial_state=False)
            GradientState._reset_state()
            _ACC.clear()
        # methods may leave parameters outside a step's graph (frozen gates, masks)
        ddp = DistributedDataParallelKwargs(find_unused_parameters=True, broadcast_buffers=True)
        _ACC[key] = Accelerator(cpu=cpu, mixed_precision=mixed, kwargs_handlers=[ddp])
    return _ACC[key]


def _split(obj, rank: int, world_size: int, n: int):
    if isinstance(obj, torch.Tensor):
        return obj.tensor_split(world_size)[rank] if obj.dim() and obj.shape[0] == n else obj
    if isinstance(obj, dict) or hasattr(obj, "items"):
        return {k: _split(v, rank, world_size, n) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_split(v, rank, world_size, n) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_split(v, rank, world_size, n) for v in obj)
    return obj
