"""Int8Linear: a Linear layer executed with real int8 kernels on CPU.

Weights are quantized symmetrically per output channel to int8 (codes in [-127, 127],
one fp32 scale per row); at run time torch's fbgemm kernel
`torch.ops.quantized.linear_dynamic` quantizes each input batch to 8 bits on the fly
(dynamic quantization), multiplies in int8 with int32 accumulation and returns fp32.
Activations get 8 bits when every weight code is within [-64, 64] (`reduce_range`),
7 otherwise.

The module's state is plain tensors (int8 codes, scales, bias), so `state_dict` and the
artifact round-trip it; the packed fbgemm weight is derived state, rebuilt after loading.

    >>> q = Int8Linear.from_linear(nn.Linear(1024, 1024))
    >>> y = q(torch.randn(64, 1024))         # (64, 1024) fp32
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from netshrink.errors import NetshrinkError
from netshrink.functional.quantize import calibrate, quantize_codes


# fbgemm's AVX2 kernel (CPUs without VNNI) adds pairs of u8 activation x s8 weight products
# in int16 with saturation: 2 * 255 * 127 overflows, so torch.ao and fbgemm use 7-bit
# activations ("reduce_range"). Codes within [-64, 64] keep 2 * 255 * 64 = 32,640 below
# 32,767, so a weight stored at <= 7 bits runs with full 8-bit activations, half the
# activation rounding error (measured, 1536 -> 384, per-tensor, outlier columns: relative
# output error 0.071 against 0.143; codes up to 127 at 8 bits: 0.50, saturated).
FULL_RANGE_MAX_CODE = 64


def reduce_range(qweight: torch.Tensor) -> bool:
    """True (7-bit activations) unless every int8 code is within [-64, 64]."""
    return bool(qweight.numel()) and int(qweight.abs().max()) > FULL_RANGE_MAX_CODE


def quantized_engine() -> str:
    engines = torch.backends.quantized.supported_engines
    for e in ("fbgemm", "x86", "qnnpack"):
        if e in engines:
            return e
    raise RuntimeError("this torch build has no quantized CPU engine (fbgemm / x86 / qnnpack)")


class Int8Figures:
    """The honest figures of a layer holding (out, in) int8 `qweight` and an optional bias:
    shared by Int8Linear and runtime.int8_dynamic.Int8DynamicLinear."""

    def ns_counts(self) -> tuple[int, int]:
        dense = self.in_features * self.out_features + (self.out_features if self.bias is not None else 0)
        zero = getattr(self, "weight_zero", None)          # asymmetric rows: a weight is 0 where q == z
        q = self.qweight if zero is None else self.qweight.to(torch.int16) - zero.to(torch.int16)[:, None]
        nz = int((q != 0).sum()) + (int((self.bias != 0).sum()) if self.bias is not None else 0)
        return dense, nz

    def ns_flops(self, batch: int) -> tuple[int, int]:
        f = 2 * batch * self.in_features * self.out_features
        return f, f


class Int8Linear(Int8Figures, nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))  # (out, in)
        self.register_buffer("scale", torch.ones(out_features))                                    # (out,)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)                   # (out,)
        self._packed = None
        self.register_load_state_dict_post_hook(lambda module, keys: module.ns_after_load())
        self.ns_after_load()

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        """Quantize `linear`'s weight per output channel (symmetric, min-max)."""
        w = linear.weight.detach().float()
        s, z = calibrate(w, bits=8, symmetric=True, method="minmax")          # (out, 1) each
        q = quantize_codes(w, scale=s, zero_point=z, bits=8, symmetric=True)
        m = cls(linear.in_features, linear.out_features, linear.bias is not None)
        with torch.no_grad():
            m.qweight.copy_(q.to(torch.int8))
            m.scale.copy_(s.reshape(-1))
            if linear.bias is not None:
                m.bias.copy_(linear.bias.detach())
        m.ns_after_load()
        return m

    # -- artifact protocol ------------------------------------------------------------
    def ns_config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None}

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "Int8Linear":
        return cls(int(cfg["in_features"]), int(cfg["out_features"]), bool(cfg["bias"]))

    def ns_after_load(self) -> None:
        """(Re)build the packed fbgemm weight from the int8 codes and scales."""
        if self.qweight.is_meta:   # built on the meta device (the loader's size guard): nothing to pack
            self._packed = None
            return
        torch.backends.quantized.engine = quantized_engine()
        zero = torch.zeros(self.out_features, dtype=torch.int64)
        with warnings.catch_warnings():   # quantized tensor constructors warn of a future deprecation
            warnings.simplefilter("ignore")
            qw = torch._make_per_channel_quantized_tensor(self.qweight.cpu(), self.scale.double().cpu(), zero, 0)
            self._packed = torch.ops.quantized.linear_prepack(qw, None if self.bias is None else self.bias.float())
        self._reduce = reduce_range(self.qweight)


    # -- compute ----------------------------------------------------------------------
    def dequantized_weight(self) -> torch.Tensor:
        """(out, in) fp32: the weight the int8 kernel multiplies by."""
        return self.qweight.float() * self.scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise NetshrinkError(f"Int8Linear runs fbgemm's int8 kernel, which is CPU-only; its input is on {x.device}: "
                                 "run this model on the CPU")
        return torch.ops.quantized.linear_dynamic(x.float().contiguous(), self._packed, self._reduce)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def to_int8(model: nn.Module, names: list[str] | None = None) -> nn.Module:
    """Replace every nn.Linear (or those named in `names`) by an Int8Linear, in place.

    >>> to_int8(model)          # then model(x) runs int8 matmuls
    """
    targets = [(n, m) for n, m in model.named_modules() if type(m) is nn.Linear and (names is None or n in names)]
    for name, lin in targets:
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, Int8Linear.from_linear(lin))
    return model
