"""`sparsify_`: pruned Linear / Conv2d layers become CSR modules (SparseLinear,
SparseConv2d) always, never, or by a rule from the layer's shape and sparsity.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from netshrink.core.submodules import set_submodule
from netshrink.errors import NetshrinkError
from netshrink.runtime.sparse_conv import SparseConv2d
from netshrink.runtime.sparse_linear import SparseLinear

Runtime = Literal["auto", "dense", "sparse"]

# The "auto" rule, from this machine's timings (benchmarks/pruning.md, 1 thread, batch 64
# and 1): CSR beats dense when at most 10 % of the weights are left and the dense layer's
# multiply-adds per call (out x in x rows) reach 2^20; below that the kernel's per-call
# overhead wins (LeNet-300-100's fc1 at 98 %: 4.8x faster at batch 64 = 15M MACs, 0.91x
# at batch 1 = 235k MACs; a 1024x1024 layer at 95 %: 2.8x at batch 1 = 1M MACs). A rule,
# not a timing, so that the same command always builds the same model.
AUTO_MAX_DENSITY = 0.10
AUTO_MIN_MACS = 1 << 20


def auto_picks_sparse(density: float, macs: int) -> bool:
    """The "auto" runtime's choice for one layer: `density` = non-zeros / weights,
    `macs` = the dense layer's multiply-adds for one call at the serving batch."""
    return density <= AUTO_MAX_DENSITY and macs >= AUTO_MIN_MACS


def sparsify_(model: nn.Module, module_names: list[str], *, runtime: Runtime = "auto", batch_size: int = 64,
              example_shape: tuple | None = None) -> dict[str, float]:
    """Replace the named Linear (and Conv2d) modules of `model` by SparseLinear
    (SparseConv2d): always ("sparse"), never ("dense"), or by the rule
    `auto_picks_sparse` at `batch_size` rows per call ("auto"). A convolution's work
    depends on its input size, so "auto" considers Conv2d layers only when
    `example_shape` (one input's shape, without the batch) says what the model is fed.
    Nothing is timed: the same model and arguments always give the same choice.

    Returns {module name: density} of the replaced ones.

    >>> sparsify_(model, ["fc1", "fc2"], runtime="auto", batch_size=64)
    {'fc1': 0.05}
    """
    done: dict[str, float] = {}
    if runtime == "dense":
        return done
    conv_inputs = _conv_inputs(model, module_names, batch_size, example_shape) if runtime == "auto" else {}
    for name in module_names:
        mod = model.get_submodule(name)
        is_conv = SparseConv2d.supported(mod)
        if type(mod) is not nn.Linear and not is_conv:
            continue
        if mod.weight.dtype != torch.float32:   # the CSR kernels here are float32 only
            if runtime == "sparse":
                raise NetshrinkError(f"runtime 'sparse': the CSR kernels run float32 layers only; {name} is "
                                     f"{mod.weight.dtype} (use runtime 'dense' or 'auto', which keep it dense)")
            continue
        density = float((mod.weight != 0).float().mean())
        if runtime == "auto":
            if is_conv:
                if name not in conv_inputs:
                    continue
                n, _, h, w = conv_inputs[name]
                oh = (h + 2 * mod.padding[0] - mod.dilation[0] * (mod.kernel_size[0] - 1) - 1) // mod.stride[0] + 1
                ow = (w + 2 * mod.padding[1] - mod.dilation[1] * (mod.kernel_size[1] - 1) - 1) // mod.stride[1] + 1
                macs = mod.weight.numel() * n * max(oh, 0) * max(ow, 0)
            else:
                macs = mod.weight.numel() * batch_size
            if not auto_picks_sparse(density, macs):
                continue
        new = SparseConv2d.from_conv(mod) if is_conv else SparseLinear.from_linear(mod)
        set_submodule(model, name, new.train(mod.training))
        done[name] = density
    return done


@torch.no_grad()
def _conv_inputs(model: nn.Module, names: list[str], batch_size: int, example_shape) -> dict[str, tuple]:
    """{conv name: its input shape at `batch_size`}, from one forward pass."""
    convs = {n: model.get_submodule(n) for n in names if type(model.get_submodule(n)) is nn.Conv2d}
    if not convs or example_shape is None:
        return {}
    shapes, handles = {}, []
    for n, m in convs.items():
        handles.append(m.register_forward_pre_hook(lambda mod, inp, n=n: shapes.__setitem__(n, tuple(inp[0].shape))))
    was = model.training
    try:
        w = next(iter(convs.values())).weight   # the model's device and dtype (float64, bf16 ...)
        model.eval()(torch.zeros(batch_size, *example_shape, device=w.device, dtype=w.dtype))
    finally:
        model.train(was)
        for h in handles:
            h.remove()
    return shapes
