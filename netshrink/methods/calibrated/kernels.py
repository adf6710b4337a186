"""Kernel choice for int8 layers: measured once at compress time, recorded in the module.

An int8 layer keeps fbgemm only where it was measured faster than the fp32 product of
its dequantized weight at the shapes the model runs: one sequence (batch 1) and a full
batch (64 sequences) of the calibration data's mean length; otherwise it computes in
fp32. The choice is written into the module's config, so loading never re-measures.
"""
from __future__ import annotations

import torch
import torch.utils.benchmark as benchmark

from netshrink.runtime.int8_dynamic import Int8DynamicLinear


def _ms(module, x) -> float:
    t = benchmark.Timer(stmt="m(x)", globals={"m": module, "x": x})
    return t.blocked_autorange(min_run_time=0.05).median * 1e3


@torch.no_grad()
def choose_kernel(module: Int8DynamicLinear, tokens_per_sample: int, policy: str = "auto") -> dict:
    """Set module.kernel (policy 'auto': measured; 'fbgemm' / 'fp32': as asked). Returns the
    measurement {kernel, ms_int8_b1, ms_fp32_b1, ms_int8_b64, ms_fp32_b64} for the report."""
    if policy != "auto":
        module.set_kernel(policy)
        return {"kernel": policy}
    t = max(1, int(tokens_per_sample))
    out = {}
    for tag, rows in (("b1", t), ("b64", 64 * t)):
        x = torch.randn(rows, module.in_features)
        for kernel in ("fbgemm", "fp32"):
            module.set_kernel(kernel)
            out[f"ms_{'int8' if kernel == 'fbgemm' else 'fp32'}_{tag}"] = round(_ms(module, x), 4)
    faster = out["ms_int8_b64"] < out["ms_fp32_b64"] and out["ms_int8_b1"] <= 1.05 * out["ms_fp32_b1"]
    module.set_kernel("fbgemm" if faster else "fp32")
    out["kernel"] = module.kernel
    return out
