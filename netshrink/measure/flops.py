"""FLOPs: torch's FlopCounterMode (multiply-adds x 2) on one input.

Dense FLOPs are what the architecture costs computed densely. Effective FLOPs count
only what the runtime really skips: a module that truly skips work (a CSR sparse
layer) reports `ns_flops(rows) -> (dense, effective)` and its own ops are not
counted again. Zeros inside a dense Linear are NOT skipped, so masks alone leave
effective FLOPs unchanged, as they should.
"""
from __future__ import annotations

import torch
from torch import nn

from netshrink.core.batches import example_inputs, model_device, model_dtype
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # torch 2.13's counter knows the CUDA attention kernels but not the CPU one
    # that F.scaled_dot_product_attention dispatches to here.
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FORMULAS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops}


@torch.no_grad()
def count_flops(model: nn.Module, example) -> tuple[int, int]:
    """(dense, effective) FLOPs of one forward pass on `example` (a tensor, a tuple of
    tensors or a core.batches.Inputs)."""
    example = example_inputs(example).to(model_device(model), model_dtype(model))
    special = [(n, m) for n, m in model.named_modules() if hasattr(m, "ns_flops")]
    handles, extra = [], {"dense": 0, "effective": 0}

    def hook(module, inputs, output):
        x = inputs[0]
        # a Linear-like layer multiplies every row of (..., in): a transformer's (N, T, in)
        # is N * T rows (counting N alone put an int8 MiniLM at 79 M FLOPs for 1.7 G)
        width = getattr(module, "in_features", None)
        rows = x.numel() // width if width and x.dim() and x.shape[-1] == width else x.shape[0]
        d, e = module.ns_flops(rows)
        extra["dense"] += d
        extra["effective"] += e

    for _, m in special:
        handles.append(m.register_forward_hook(hook))
    was = model.training
    model.eval()
    # In eval torch runs nn.TransformerEncoderLayer / MultiheadAttention through a
    # fused kernel that FlopCounterMode does not count; the reference path it counts
    # computes the same thing.
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with FlopCounterMode(display=False, custom_mapping=_EXTRA_FORMULAS) as counter:
            example.call(model)
        per_module = counter.get_flop_counts()
        counted = counter.get_total_flops()
        # Subtract what FlopCounterMode saw inside special modules (if anything).
        inside = 0
        for name, _ in special:
            key = f"{type(model).__name__}.{name}" if name else type(model).__name__
            inside += sum(per_module.get(key, {}).values())
    finally:
        for h in handles:
            h.remove()
        model.train(was)
        torch.backends.mha.set_fastpath_enabled(fastpath)
    base = counted - inside
    return int(base + extra["dense"]), int(base + extra["effective"])
