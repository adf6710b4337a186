"""Int8DynamicLinear: W8A8 with activations quantized per token at run time.

Weights: int8 codes per output channel (symmetric, [-127, 127]) with one fp32 scale each;
an optional SmoothQuant input scale (in,). Activations: each token (row) x is mapped to
[-1, 1] by its own centre c and half-range r (x_n = (x - c) / r), then fbgemm's dynamic
int8 kernel quantizes x_n (all rows now share one range, so its per-tensor 7-bit grid
is a per-token affine grid), multiplies in int8 with int32 accumulation, and
    y = r * (W x_n) + c * (W 1) + b          (W 1: the row sums of the dequantized weight).
fbgemm needs 7-bit activations (reduce_range) on CPUs without VNNI: 8-bit u8*s8 pair
sums saturate int16 there (measured: max error 26 vs 0.7 on a 1536-wide layer).
`act = "token_scale"` is the cheaper half of it: each token divided by its own max |x|
only (x_n = x / r), so fbgemm's one affine grid over all rows of x_n spans [min x_n, 1]
with a shared zero point, and y = r * (W x_n) + b is one fused pass (measured, one thread,
3,840 x 384 -> 1536: 5 ms of passes around the 32 ms int8 GEMM, against 13 ms for "token").
`act = "tensor"` is the plain per-tensor dynamic kernel (torch.ao's); `kernel = "fp32"`
computes with the dequantized weight and unquantized activations, for layers where int8
was measured slower; `kernel = "by_size"` does the same for calls under FBGEMM_MIN_MACS
multiply-adds (one short sentence) and runs fbgemm above, so batch 1 is not slowed by the
int8 overheads. The dequantized fp32 weight is kept in memory for those two. The kernel is part of the module's config: loading never re-measures.

    >>> q = Int8DynamicLinear.from_linear(nn.Linear(384, 1536), act="token")
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from netshrink.functional.quantize import calibrate, quantize_codes
from netshrink.runtime.int8_linear import Int8Figures, quantized_engine

KERNELS = ("fbgemm", "fp32", "by_size")
# kernel "by_size": a call of fewer multiply-adds runs in fp32 on the dequantized weight,
# a larger one through fbgemm: quantizing each token and rescaling the output cost more than the int8
# GEMM saves there (one-thread CPU time, 384x384 at 30 tokens: int8 0.52x of fp32;
# 384x1536 at 1,920 tokens: faster). A batch-1 sentence is under it, batch 64 over it.
FBGEMM_MIN_MACS = 2 ** 25
ACTS = ("token", "tensor", "token_scale")


class Int8DynamicLinear(Int8Figures, nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, smooth: bool = False,
                 act: str = "token", kernel: str = "fbgemm"):
        super().__init__()
        if act not in ACTS or kernel not in KERNELS:
            raise ValueError(f"act must be one of {ACTS}, kernel one of {KERNELS}")
        self.in_features, self.out_features = in_features, out_features
        self.smooth, self.act, self.kernel = bool(smooth), act, kernel
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))  # (out, in)
        self.register_buffer("scale", torch.ones(out_features))                                    # (out,)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.register_buffer("input_scale", torch.ones(in_features) if smooth else None)           # (in,) 1/s
        self._packed = self._wsum = self._wdeq = None
        self.register_load_state_dict_post_hook(lambda module, keys: module.ns_after_load())
        self.ns_after_load()

    @classmethod
    @torch.no_grad()
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None, *, input_scale: torch.Tensor | None = None,
                    act: str = "token", kernel: str = "fbgemm") -> "Int8DynamicLinear":
        """weight (out, in) fp32 (already multiplied by diag(s) when smoothing)."""
        w = weight.detach().float()
        s, z = calibrate(w, bits=8, symmetric=True, method="minmax")              # (out, 1)
        codes = quantize_codes(w, scale=s, zero_point=z, bits=8, symmetric=True)
        return cls.from_codes(codes, s, bias, input_scale=input_scale, act=act, kernel=kernel)

    @classmethod
    @torch.no_grad()
    def from_codes(cls, codes: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, *,
                   input_scale: torch.Tensor | None = None, act: str = "token",
                   kernel: str = "fbgemm") -> "Int8DynamicLinear":
        """codes (out, in) integers in [-127, 127] (e.g. GPTQ's 4-bit codes), scale (out,)."""
        m = cls(codes.shape[1], codes.shape[0], bias is not None, input_scale is not None, act, kernel)
        if codes.abs().max() > 127:
            raise ValueError("int8 codes must lie in [-127, 127]")
        m.qweight.copy_(codes.to(torch.int8))
        m.scale.copy_(scale.reshape(-1))
        if bias is not None:
            m.bias.copy_(bias.detach())
        if input_scale is not None:
            m.input_scale.copy_(input_scale)
        m.ns_after_load()
        return m

    @classmethod
    def from_linear(cls, linear: nn.Linear, **kw) -> "Int8DynamicLinear":
        return cls.from_weight(linear.weight, linear.bias, **kw)

    # -- artifact protocol ------------------------------------------------------------
    def ns_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
                "smooth": self.smooth, "act": self.act, "kernel": self.kernel}

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "Int8DynamicLinear":
        return cls(int(cfg["in_features"]), int(cfg["out_features"]), bool(cfg["bias"]), bool(cfg["smooth"]),
                   str(cfg["act"]), str(cfg["kernel"]))

    def ns_after_load(self) -> None:
        """Derived state: the packed fbgemm weight (or the dequantized fp32 one) and W 1."""
        if self.qweight.is_meta:          # built on "meta" while a file is checked: nothing to derive
            return
        wdeq = self.qweight.float() * self.scale[:, None]                          # (out, in)
        self._wsum = wdeq.sum(1)                                                   # (out,)
        # fp32, and by_size's small calls: with SmoothQuant's input scale folded in (W diag(s)),
        # so those calls cost exactly what the fp32 Linear does.
        if self.kernel == "fbgemm":
            self._wdeq = None
        else:
            self._wdeq = wdeq * self.input_scale[None, :] if self.smooth else wdeq
        if self.kernel != "fp32":
            torch.backends.quantized.engine = quantized_engine()
            zero = torch.zeros(self.out_features, dtype=torch.int64)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                qw = torch._make_per_channel_quantized_tensor(self.qweight.cpu(), self.scale.double().cpu(), zero, 0)
                b = self.bias.float() if (self.bias is not None and self.act == "tensor") else None
                self._packed = torch.ops.quantized.linear_prepack(qw, b)


    def set_kernel(self, kernel: str) -> None:
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}")
        self.kernel = kernel
        self.ns_after_load()

    # -- compute ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.kernel == "fp32" or (self.kernel == "by_size"
                                     and x.numel() * self.out_features < FBGEMM_MIN_MACS):   # MACs: rows * in * out
            return F.linear(x, self._wdeq, self.bias)
        if self.act == "tensor" and not self.smooth:       # torch.ao's call: no reshape, nothing around it
            return torch.ops.quantized.linear_dynamic(x, self._packed, True)
        own = self.smooth                 # x below is this call's own tensor: divide it in place
        if self.smooth:
            x = x * self.input_scale
        shape = x.shape
        x = x.reshape(-1, self.in_features).contiguous()                          # (M, in)
        if self.act == "tensor":
            y = torch.ops.quantized.linear_dynamic(x, self._packed, True)
        elif self.act == "token_scale":
            r = torch.maximum(x.amax(1, keepdim=True), -x.amin(1, keepdim=True)).clamp_(min=1e-8)   # (M, 1)
            y = torch.ops.quantized.linear_dynamic(x.div_(r) if own else x / r, self._packed, True)
            y = y.mul_(r) if self.bias is None else torch.addcmul(self.bias, y, r)
        else:
            # In place wherever it can be: at batch 64 the (M, out) passes after the int8
            # GEMM cost as much as the GEMM itself when each allocates (measured 0.68-1.03x
            # of fp32 at 1,920 tokens before, against torch.ao's per-tensor 1.6-2.0x).
            lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)              # (M, 1) each (aminmax: 8x slower)
            c, r = (hi + lo) * 0.5, ((hi - lo) * 0.5).clamp(min=1e-8)
            y = torch.ops.quantized.linear_dynamic(torch.sub(x, c).div_(r), self._packed, True)
            y.mul_(r)
            if self.bias is None:
                y.addmm_(c, self._wsum[None, :])                                   # r*(W x_n) + c (W 1)
            else:                                                                  # ... + b, one pass
                y.addmm_(torch.cat([c, torch.ones_like(c)], 1), torch.stack([self._wsum, self.bias.float()]))
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"int8 weights, act={self.act}, kernel={self.kernel}{', smoothed' if self.smooth else ''}")
