"""Kernel choice for int8 layers, recorded in the module's config (loading never re-measures).

policy "auto" (the default) is a rule from shapes, so the same command writes the same
file (issue 14): "by_size" (fbgemm for calls of >= runtime.int8_dynamic.FBGEMM_MIN_MACS
multiply-adds, fp32 below) where one call at batch 64 of the calibration data's mean
length does at least 2^20 multiply-adds (the threshold runtime.sparsify uses too: below it
the int8 quantize / dequantize overhead dominates), fp32 on the dequantized weight otherwise;
a per-tensor layer (act "tensor" or "static": no pass over the activations besides fbgemm's own) gets
"fbgemm" at every size instead of "by_size" (one thread, 31 tokens: 384x384 1.25-1.36x,
384x1536 1.8-2.0x of fp32, against 0.7-0.9x for "token_scale" on 384x384).
"measure" times both kernels at batch 1 and 64 on this machine: fp32 where int8 is not
faster at batch 64, fbgemm where it is faster and not slower at batch 1, by_size between:
the user's machine decides, but the file then depends on the timing.

`fuse_group` makes the int8 layers of one input group (query / key / value) one GEMM
(runtime.int8_dynamic.Int8FusedLinear); their kernel is then chosen for the whole width.
"""
from __future__ import annotations

import torch
import torch.utils.benchmark as benchmark

from netshrink.runtime.int8_dynamic import Int8DynamicLinear, fuse

MIN_MACS = 2 ** 20


def _ms(module, x) -> float:
    t = benchmark.Timer(stmt="m(x)", globals={"m": module, "x": x})
    return t.blocked_autorange(min_run_time=0.05).median * 1e3


@torch.no_grad()
def choose_kernel(module: Int8DynamicLinear, tokens_per_sample: int, policy: str = "auto") -> dict:
    """Set module.kernel (policy 'auto': the shape rule; 'measure': timed; 'fbgemm' / 'fp32':
    as asked). Returns what decided it, for the report (with 'measure': {kernel, ms_int8_b1,
    ms_fp32_b1, ms_int8_b64, ms_fp32_b64})."""
    t = max(1, int(tokens_per_sample))
    if policy == "auto":
        macs = 64 * t * module.in_features * module.out_features
        fast = "fbgemm" if module.act in ("tensor", "static") else "by_size"
        module.set_kernel(fast if macs >= MIN_MACS else "fp32")
        return {"kernel": module.kernel, "rule": f"{macs} MACs per batch-64 call vs {MIN_MACS}"}
    if policy != "measure":
        module.set_kernel(policy)
        return {"kernel": policy}
    out = {}
    for tag, rows in (("b1", t), ("b64", 64 * t)):
        x = torch.randn(rows, module.in_features)
        for kernel in ("fbgemm", "fp32"):
            module.set_kernel(kernel)
            out[f"ms_{'int8' if kernel == 'fbgemm' else 'fp32'}_{tag}"] = round(_ms(module, x), 4)
    if out["ms_int8_b64"] >= out["ms_fp32_b64"]:
        module.set_kernel("fp32")
    else:   # faster at batch 64; at batch 1 too, or only above the size where by_size switches
        module.set_kernel("fbgemm" if out["ms_int8_b1"] <= 1.05 * out["ms_fp32_b1"] else "by_size")
    out["kernel"] = module.kernel
    return out


def fusable(modules: list) -> bool:
    """Whether these modules can run as one int8 GEMM: two or more plain Int8DynamicLinear
    sharing input width, act, smoothing (the same input scale), bias presence and weight
    symmetry (act
    "static": the same range and outlier channels too)."""
    if len(modules) < 2 or not all(type(m) is Int8DynamicLinear for m in modules):
        return False
    if modules[0].act == "static" and not all(
            m.act == "static" and torch.equal(m.act_range, modules[0].act_range)
            and torch.equal(m.outlier_index, modules[0].outlier_index) for m in modules):
        return False
    a = modules[0]
    same = all((m.in_features, m.act, m.smooth, m.bias is None, m.asymmetric)
               == (a.in_features, a.act, a.smooth, a.bias is None, a.asymmetric) for m in modules)
    return same and (not a.smooth or all(torch.equal(m.input_scale, a.input_scale) for m in modules))


@torch.no_grad()
def fuse_group(modules: list[Int8DynamicLinear], group: str, tokens_per_sample: int,
               policy: str = "auto") -> tuple[list, dict]:
    """(Int8FusedLinear members to replace `modules`, in order; the kernel report): the
    kernel is chosen (`choose_kernel`'s policy) for the concatenated layer, the width
    that runs. `modules` must be `fusable`; they are left unchanged."""
    whole = Int8DynamicLinear.from_codes(
        torch.cat([m.qweight for m in modules]), torch.cat([m.scale for m in modules]),
        None if modules[0].bias is None else torch.cat([m.bias for m in modules]),
        input_scale=modules[0].input_scale, act=modules[0].act, outliers=modules[0].outliers,
        zero_point=torch.cat([m.weight_zero for m in modules]) if modules[0].asymmetric else None)
    if whole.act == "static":
        whole.set_static(*modules[0].act_range.tolist(), modules[0].outlier_index)
    info = choose_kernel(whole, tokens_per_sample, policy)
    return fuse(modules, group, whole.kernel), info
