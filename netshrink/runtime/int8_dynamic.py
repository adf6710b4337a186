"""Int8DynamicLinear: W8A8 with activations quantized per token at run time.

Weights: int8 codes per output channel (symmetric, [-127, 127]) with one fp32 scale each,
or asymmetric (`asymmetric`: a zero point per channel too, w = (q - z) * scale, as GPTQ's
asymmetric grids are; fbgemm subtracts z times each activation row's sum exactly); an
optional SmoothQuant input scale (in,). Activations: each token (row) x is mapped to
[-1, 1] by its own centre c and half-range r (x_n = (x - c) / r), then fbgemm's dynamic
int8 kernel quantizes x_n (all rows now share one range, so its per-tensor 7-bit grid
is a per-token affine grid), multiplies in int8 with int32 accumulation, and
    y = r * (W x_n) + c * (W 1) + b          (W 1: the row sums of the dequantized weight).
fbgemm needs 7-bit activations (reduce_range) on CPUs without VNNI when the weight codes
use all of [-127, 127]: 8-bit u8*s8 pair sums saturate int16 there (measured: max error 26
vs 0.7 on a 1536-wide layer); codes within [-64, 64] (weights of <= 7 bits, e.g. GPTQ's)
cannot saturate and run with 8-bit activations (int8_linear.reduce_range).
`act = "token_scale"` is the cheaper half of it: each token divided by its own max |x|
only (x_n = x / r), so fbgemm's one affine grid over all rows of x_n spans [min x_n, 1]
with a shared zero point, and y = r * (W x_n) + b is one fused pass (measured, one thread,
3,840 x 384 -> 1536: 5 ms of passes around the 32 ms int8 GEMM, against 13 ms for "token").
`act = "tensor"` is the plain per-tensor dynamic kernel (torch.ao's); `act = "static"` takes
one calibrated range [lo, hi] for the whole input instead (no pass to find it: fbgemm's
static-input kernel, fp32 out) and keeps k outlier input channels exact, LLM.int8()'s
decomposition with the channels fixed at calibration (Dettmers et al. 2022): the int8 GEMM
sees them clipped to the range and their excess x_o - clip(x_o) is added in fp32,
    y = W q(x) + W_o (x_o - clip(x_o)) + b          (W_o: the k columns, (out, k)),
so the range need not stretch to BERT's few massive channels (MiniLM's FFN-output inputs:
max 24.7, 5.3 without 8 channels). It needs codes within [-64, 64] (8-bit activations,
values past the range clipped: no saturation); `kernel = "fp32"`
computes with the dequantized weight and unquantized activations, for layers where int8
was measured slower; `kernel = "by_size"` does the same for calls under FBGEMM_MIN_MACS
multiply-adds (one short sentence) and runs fbgemm above, so batch 1 is not slowed by the
int8 overheads. The dequantized fp32 weight is kept in memory for those two. The kernel is part of the module's config: loading never re-measures.

`Int8FusedLinear`: layers that read one input (BERT's query / key / value) run as one
int8 GEMM, so the input is scaled and quantized once and fbgemm sees one wide weight
(measured, one thread, 3,840 x 384 -> 3 x 384, per-tensor: 28-32 ms fused against 33-39 ms
for three calls). Each member keeps its own codes (the file stores the same tensors); the
first member of the group computes the concatenated output once per input and each member
returns its own columns (a view). An input is recognised by its storage, shape, strides and
version counter; under torch.inference_mode, which keeps no version counters, every call
computes the whole output (correct, not faster).

    >>> q = Int8DynamicLinear.from_linear(nn.Linear(384, 1536), act="token")
    >>> fuse([q1, q2, q3], "encoder.layer.0.attention.self.query")   # Int8FusedLinear x3, same outputs
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from netshrink.errors import ArtifactError, NetshrinkError
from netshrink.functional.quantize import calibrate, quantize_codes
from netshrink.runtime.int8_linear import FULL_RANGE_MAX_CODE, Int8Figures, quantized_engine, reduce_range
from netshrink.runtime.sparse_linear import quiet_csr

KERNELS = ("fbgemm", "fp32", "by_size")
# kernel "by_size": a call of fewer multiply-adds runs in fp32 on the dequantized weight,
# a larger one through fbgemm: quantizing each token and rescaling the output cost more than the int8
# GEMM saves there (one-thread CPU time, 384x384 at 30 tokens: int8 0.52x of fp32;
# 384x1536 at 1,920 tokens: faster). A batch-1 sentence is under it, batch 64 over it.
FBGEMM_MIN_MACS = 2 ** 25
ACTS = ("token", "tensor", "token_scale", "static")
STATIC_OP = "linear_with_input_q_dq_qweight_dq_output_fp32"     # torch.ops.quantized: x, scale, zero point, W


def _run_codes(codes: torch.Tensor, zero: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 codes, int64 zero points) that fbgemm runs: an asymmetric row's codes minus its
    zero point where every row then fits [-64, 64] (GPTQ's <= 6-bit asymmetric grids), so
    fbgemm needs no zero-point pass (measured, one thread, 3,840 rows, random codes: 2 % of the
    GEMM at 384 -> 1536, 4 % at 1536 -> 384) and 8-bit activations cannot saturate; otherwise
    the stored codes and zero points."""
    if zero is None:
        return codes, torch.zeros(codes.shape[0], dtype=torch.int64)
    shifted = codes.to(torch.int16) - zero.to(torch.int16).reshape(-1, 1)
    if shifted.numel() and int(shifted.abs().max()) <= FULL_RANGE_MAX_CODE:
        return shifted.to(torch.int8), torch.zeros(codes.shape[0], dtype=torch.int64)
    return codes.to(torch.int8), zero.reshape(-1).long()


def _sparse_rows(exc: torch.Tensor) -> torch.Tensor:
    """exc (M, k) as a CSR matrix: its product adds into only the rows and channels that
    have an excess (measured, one thread, MiniLM at batch 64 with 32 channels: 48 ms per
    forward against 64 ms for the dense in-place product over every row; batch 1: 1.1 / 1.3)."""
    with quiet_csr():
        return exc.to_sparse_csr()


class Int8DynamicLinear(Int8Figures, nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, smooth: bool = False,
                 act: str = "token", kernel: str = "fbgemm", outliers: int = 0, asymmetric: bool = False):
        super().__init__()
        if act not in ACTS or kernel not in KERNELS:
            raise ValueError(f"act must be one of {ACTS}, kernel one of {KERNELS}")
        if outliers and act != "static" or not 0 <= outliers <= in_features:
            raise ValueError(f"outliers: 0..{in_features} input channels, with act 'static' only")
        self.in_features, self.out_features = in_features, out_features
        self.smooth, self.act, self.kernel = bool(smooth), act, kernel
        self.outliers, self.asymmetric = int(outliers), bool(asymmetric)
        static = act == "static"
        self.register_buffer("act_range", torch.tensor([-1.0, 1.0]) if static else None)       # (2,) lo <= 0 <= hi
        self.register_buffer("outlier_index", torch.zeros(outliers, dtype=torch.long) if static else None)  # (k,)
        self.register_buffer("qweight", torch.zeros(out_features, in_features, dtype=torch.int8))  # (out, in)
        self.register_buffer("scale", torch.ones(out_features))                                    # (out,)
        # asymmetric: each row's zero point in the codes' int8 domain, w = (q - z) * scale
        self.register_buffer("weight_zero", torch.zeros(out_features, dtype=torch.int8) if asymmetric else None)
        self.register_buffer("bias", torch.zeros(out_features) if bias else None)
        self.register_buffer("input_scale", torch.ones(in_features) if smooth else None)           # (in,) 1/s
        self._packed = self._wsum = self._wdeq = None
        self.register_load_state_dict_post_hook(lambda module, keys: module.ns_after_load())
        self.ns_after_load()

    @classmethod
    @torch.no_grad()
    def from_weight(cls, weight: torch.Tensor, bias: torch.Tensor | None, *, input_scale: torch.Tensor | None = None,
                    act: str = "token", kernel: str = "fbgemm", bits: int = 8,
                    outliers: int = 0) -> "Int8DynamicLinear":
        """weight (out, in) fp32 (already multiplied by diag(s) when smoothing), quantized per
        output channel, symmetric, to `bits` (2..8; codes within +-(2^(bits-1) - 1))."""
        w = weight.detach().float()
        s, z = calibrate(w, bits=bits, symmetric=True, method="minmax")           # (out, 1)
        codes = quantize_codes(w, scale=s, zero_point=z, bits=bits, symmetric=True)
        return cls.from_codes(codes, s, bias, input_scale=input_scale, act=act, kernel=kernel, outliers=outliers)

    @classmethod
    @torch.no_grad()
    def from_codes(cls, codes: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None, *,
                   input_scale: torch.Tensor | None = None, act: str = "token",
                   kernel: str = "fbgemm", outliers: int = 0,
                   zero_point: torch.Tensor | None = None) -> "Int8DynamicLinear":
        """codes (out, in) integers in [-127, 127] (e.g. GPTQ's 4-bit codes), scale (out,);
        zero_point (out,) integers in [-128, 127]: asymmetric rows, w = (codes - zero_point) * scale
        (fbgemm takes per-channel zero points exactly). act "static": then `set_static` with the
        calibrated range and `outliers` channels."""
        m = cls(codes.shape[1], codes.shape[0], bias is not None, input_scale is not None, act, kernel, outliers,
                zero_point is not None)
        if codes.max() > 127 or codes.min() < (-128 if zero_point is not None else -127):
            raise ValueError("int8 codes must lie in [-127, 127] ([-128, 127] with zero points)")
        if zero_point is not None:
            if zero_point.numel() != codes.shape[0] or zero_point.min() < -128 or zero_point.max() > 127:
                raise ValueError("zero_point: one integer in [-128, 127] per output channel")
            m.weight_zero.copy_(zero_point.reshape(-1).to(torch.int8))
        if act == "static" and reduce_range(_run_codes(codes, zero_point)[0]):
            raise ValueError("act 'static' needs int8 codes within [-64, 64] (weights of <= 7 bits): "
                             "8-bit activations would saturate fbgemm's int16 sums otherwise")
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
        cfg = {"in_features": self.in_features, "out_features": self.out_features, "bias": self.bias is not None,
               "smooth": self.smooth, "act": self.act, "kernel": self.kernel}
        if self.act == "static":
            cfg["outliers"] = self.outliers
        return {**cfg, "asymmetric": True} if self.asymmetric else cfg

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "Int8DynamicLinear":
        return cls(int(cfg["in_features"]), int(cfg["out_features"]), bool(cfg["bias"]), bool(cfg["smooth"]),
                   str(cfg["act"]), str(cfg["kernel"]), int(cfg.get("outliers", 0)), bool(cfg.get("asymmetric", False)))

    @torch.no_grad()
    def set_static(self, lo: float, hi: float, outlier_index: torch.Tensor) -> None:
        """act "static": the input range [lo, hi] (lo <= 0 <= hi, of the GEMM's input: after
        the smoothing scale) and the input channels kept exact beside it."""
        if self.act != "static" or outlier_index.numel() != self.outliers:
            raise ValueError(f"set_static: act 'static' with {self.outliers} outlier channels")
        self.act_range.copy_(torch.tensor([min(float(lo), 0.0), max(float(hi), 0.0)]))
        self.outlier_index.copy_(outlier_index.reshape(-1).long())
        self.ns_after_load()

    def ns_after_load(self) -> None:
        """Derived state: the packed fbgemm weight (or the dequantized fp32 one) and W 1."""
        if self.qweight.is_meta:          # built on "meta" while a file is checked: nothing to derive
            return
        wdeq = self.dequantized_weight()                                           # (out, in)
        self._wsum = wdeq.sum(1)                                                   # (out,)
        # fp32, and by_size's small calls: with SmoothQuant's input scale folded in (W diag(s)),
        # so those calls cost exactly what the fp32 Linear does.
        if self.kernel == "fbgemm":
            self._wdeq = None
        else:
            self._wdeq = wdeq * self.input_scale[None, :] if self.smooth else wdeq
        codes, zero = _run_codes(self.qweight, self.weight_zero)                   # what fbgemm runs
        if self.kernel != "fp32":
            torch.backends.quantized.engine = quantized_engine()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                qw = torch._make_per_channel_quantized_tensor(codes.cpu(), self.scale.double().cpu(), zero.cpu(), 0)
                b = self.bias.float() if (self.bias is not None and self.act in ("tensor", "static")) else None
                self._packed = torch.ops.quantized.linear_prepack(qw, b)
        self._reduce = reduce_range(codes)
        if self.act == "static":
            self._static_state(wdeq)

    def dequantized_weight(self) -> torch.Tensor:
        """(out, in) fp32: (codes - zero point) * scale per row."""
        q = self.qweight.float()
        return (q - self.weight_zero.float()[:, None] if self.asymmetric else q) * self.scale[:, None]

    @torch.no_grad()
    def scale_outputs(self, t: torch.Tensor) -> None:
        """Multiply output channel j by t_j (> 0): its weight scale and bias; the codes stay."""
        self.scale.mul_(t)
        if self.bias is not None:
            self.bias.mul_(t)
        self.ns_after_load()

    def without_input_scale(self) -> "Int8DynamicLinear":
        """The same layer without its input scale (for an input already scaled upstream)."""
        q = Int8DynamicLinear.from_codes(self.qweight, self.scale, self.bias, act=self.act, kernel=self.kernel,
                                         outliers=self.outliers, zero_point=self.weight_zero)
        if self.act == "static":       # the same input, so the same range and outlier channels
            q.set_static(*self.act_range.tolist(), self.outlier_index)
        return q

    def _static_state(self, wdeq: torch.Tensor) -> None:
        """The static grid (scale, zero point, the range it represents) and W_o."""
        if self._reduce and self.kernel != "fp32":
            raise ArtifactError(f"Int8DynamicLinear act 'static': weight codes beyond [-64, 64] "
                                f"(max {int(self.qweight.abs().max())}) would saturate fbgemm's 8-bit activations")
        lo, hi = (float(v) for v in self.act_range)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= 0.0 <= hi):
            raise ArtifactError(f"Int8DynamicLinear act 'static': range [{lo}, {hi}] must hold 0 and be finite")
        idx = self.outlier_index
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.in_features):
            raise ArtifactError(f"Int8DynamicLinear act 'static': outlier channels outside 0..{self.in_features - 1}")
        scale = max((hi - lo) / 255.0, 1e-12)
        zero = min(max(round(-lo / scale), 0), 255)
        self._static = (scale, zero, -zero * scale, (255 - zero) * scale)
        self._wo = wdeq[:, idx].t().contiguous() if idx.numel() else None           # (k, out)

    def set_kernel(self, kernel: str) -> None:
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}")
        self.kernel = kernel
        self.ns_after_load()

    # -- compute ----------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":     # its derived state (packed / dequantized weights) lives on the CPU
            raise NetshrinkError(f"Int8DynamicLinear runs fbgemm's int8 kernels, which are CPU-only; its input is on "
                                 f"{x.device}: run this model on the CPU")
        x = x.float()
        if self.kernel == "fp32" or (self.kernel == "by_size"
                                     and x.numel() * self.out_features < FBGEMM_MIN_MACS):   # MACs: rows * in * out
            return F.linear(x, self._wdeq, self.bias)
        if self.act == "tensor" and not self.smooth:       # torch.ao's call: no reshape, nothing around it
            return torch.ops.quantized.linear_dynamic(x, self._packed, self._reduce)
        own = self.smooth                 # x below is this call's own tensor: divide it in place
        if self.smooth:
            x = x * self.input_scale
        shape = x.shape
        x = x.reshape(-1, self.in_features).contiguous()                          # (M, in)
        if self.act == "static":
            scale, zero, lo, hi = self._static
            y = getattr(torch.ops.quantized, STATIC_OP)(x, scale, zero, self._packed)
            if self._wo is not None:       # the outlier channels' excess over the range, exact,
                xo = x.index_select(1, self.outlier_index)      # added where there is one: a sparse
                exc = xo - xo.clamp(lo, hi)                     # (M, k) matrix (a few channels of
                y.addmm_(_sparse_rows(exc), self._wo)           # some tokens) times W_o, in place
        elif self.act == "tensor":
            y = torch.ops.quantized.linear_dynamic(x, self._packed, self._reduce)
        elif self.act == "token_scale":
            r = torch.maximum(x.amax(1, keepdim=True), -x.amin(1, keepdim=True)).clamp_(min=1e-8)   # (M, 1)
            y = torch.ops.quantized.linear_dynamic(x.div_(r) if own else x / r, self._packed, self._reduce)
            y = y.mul_(r) if self.bias is None else torch.addcmul(self.bias, y, r)
        else:
            # In place wherever it can be: at batch 64 the (M, out) passes after the int8
            # GEMM cost as much as the GEMM itself when each allocates (measured 0.68-1.03x
            # of fp32 at 1,920 tokens before, against torch.ao's per-tensor 1.6-2.0x).
            lo, hi = x.amin(1, keepdim=True), x.amax(1, keepdim=True)              # (M, 1) each (aminmax: 8x slower)
            c, r = (hi + lo) * 0.5, ((hi - lo) * 0.5).clamp(min=1e-8)
            y = torch.ops.quantized.linear_dynamic(torch.sub(x, c).div_(r), self._packed, self._reduce)
            y.mul_(r)
            if self.bias is None:
                y.addmm_(c, self._wsum[None, :])                                   # r*(W x_n) + c (W 1)
            else:                                                                  # ... + b, one pass
                y.addmm_(torch.cat([c, torch.ones_like(c)], 1), torch.stack([self._wsum, self.bias.float()]))
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"int8 weights, act={self.act}, kernel={self.kernel}{', smoothed' if self.smooth else ''}")


class Int8FusedLinear(Int8DynamicLinear):
    """One member of a group of Int8DynamicLinear layers that read the same input and run
    as one GEMM. `group` names the group (unique within the model: the first member's path
    when fused), `member` is this layer's place in it (its columns of the whole output)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, smooth: bool = False,
                 act: str = "token", kernel: str = "fbgemm", group: str = "", member: int = 0, outliers: int = 0,
                 asymmetric: bool = False):
        self.group, self.member = str(group), int(member)
        if not self.group or self.member < 0:
            raise ValueError("a fused layer needs a group name and a member index >= 0")
        self.__dict__["_lead"] = None        # the group's first member, deliberately not a child
        super().__init__(in_features, out_features, bias, smooth, act, kernel, outliers, asymmetric)

    @classmethod
    def member_of(cls, m: Int8DynamicLinear, group: str, member: int) -> "Int8FusedLinear":
        f = cls(m.in_features, m.out_features, m.bias is not None, m.smooth, m.act, m.kernel, group, member,
                m.outliers, m.asymmetric)
        f.load_state_dict(m.state_dict())
        return f

    def ns_config(self) -> dict:
        return {**super().ns_config(), "group": self.group, "member": self.member}

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "Int8FusedLinear":
        return cls(int(cfg["in_features"]), int(cfg["out_features"]), bool(cfg["bias"]), bool(cfg["smooth"]),
                   str(cfg["act"]), str(cfg["kernel"]), str(cfg["group"]), int(cfg["member"]),
                   int(cfg.get("outliers", 0)), bool(cfg.get("asymmetric", False)))

    def ns_after_load(self) -> None:
        lead = self.__dict__.get("_lead")
        if lead is not None:
            lead.__dict__["_whole"] = None    # rebuilt from the members' state at the next call
        if not self.qweight.is_meta and lead is None:
            super().ns_after_load()           # unlinked: its own kernel state (until ns_link)

    def set_kernel(self, kernel: str) -> None:
        super().set_kernel(kernel)
        if self.__dict__.get("_lead") is not None:
            self._drop_own()
            self._lead.__dict__["_whole"] = None

    def _drop_own(self) -> None:
        self._packed = self._wdeq = self._wsum = None       # the group's whole module computes

    def ns_link(self, root: nn.Module) -> None:
        lead = self.__dict__.get("_lead")
        if lead is not None and any(m is lead for m in root.modules()):
            return                             # linked already (by another member)
        found = [m for m in root.modules() if isinstance(m, Int8FusedLinear) and m.group == self.group]
        _link(sorted(found, key=lambda m: m.member))

    # -- compute ----------------------------------------------------------------------
    def _whole_module(self) -> Int8DynamicLinear:
        whole = self.__dict__.get("_whole")
        if whole is None:
            ms = self.__dict__["_members"]
            bias = None if self.bias is None else torch.cat([m.bias for m in ms])
            zero = torch.cat([m.weight_zero for m in ms]) if self.asymmetric else None
            whole = Int8DynamicLinear.from_codes(
                torch.cat([m.qweight for m in ms]), torch.cat([m.scale for m in ms]), bias,
                input_scale=self.input_scale, act=self.act, kernel=self.kernel, outliers=self.outliers,
                zero_point=zero)
            if self.act == "static":         # the members read one input: one range, one set of channels
                whole.set_static(*self.act_range.tolist(), self.outlier_index)
            self.__dict__["_whole"] = whole
            self.__dict__["_cache"] = None
        return whole

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = self.__dict__.get("_lead")
        if lead is None:
            raise ArtifactError(f"Int8FusedLinear of group {self.group!r} is not linked (call ns_link(model))")
        return lead._part(x, self.member)

    def _part(self, x: torch.Tensor, i: int) -> torch.Tensor:
        whole, ms, offsets = self._whole_module(), self.__dict__["_members"], self.__dict__["_offsets"]
        self.calls += 1
        try:
            key = (x.data_ptr(), tuple(x.shape), x.stride(), x._version, x.dtype, x.device)
        except RuntimeError:                   # an inference tensor: no version counter to trust
            key = None
        c = self.__dict__.get("_cache")
        if key is None or c is None or c[0] != key or i in c[2]:
            y = whole(x)
            self.computes += 1
            # x is kept while cached: its storage cannot be reused by another tensor meanwhile
            c = [key, y, set(), x] if key is not None else None
            self.__dict__["_cache"] = c
        else:
            y = c[1]
        if c is not None:
            c[2].add(i)
            if len(c[2]) == len(ms):
                self.__dict__["_cache"] = None
        return y[..., offsets[i]:offsets[i + 1]]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", fused group {self.group!r} member {self.member}"


def _link(members: list[Int8FusedLinear]) -> None:
    """Connect a group's members (sorted by member index) to its first one."""
    name = members[0].group if members else "?"
    if [m.member for m in members] != list(range(len(members))) or len(members) < 2:
        raise ArtifactError(f"fused group {name!r}: members {[m.member for m in members]}, expected 0..n-1, n >= 2")
    first = members[0]
    for m in members:
        if (m.in_features, m.act, m.kernel, m.smooth, m.bias is None, m.asymmetric) != \
                (first.in_features, first.act, first.kernel, first.smooth, first.bias is None, first.asymmetric):
            raise ArtifactError(f"fused group {name!r}: members differ in input width, act, kernel, "
                                "smoothing, bias or weight zero points")
        if m.smooth and not torch.equal(m.input_scale, first.input_scale):
            raise ArtifactError(f"fused group {name!r}: members have different input scales")
        if m.act == "static" and not (torch.equal(m.act_range, first.act_range)
                                      and torch.equal(m.outlier_index, first.outlier_index)):
            raise ArtifactError(f"fused group {name!r}: members have different static ranges or outlier channels")
    offsets = [0]
    for m in members:
        offsets.append(offsets[-1] + m.out_features)
    first.__dict__.update(_members=list(members), _offsets=offsets, _whole=None, _cache=None)
    first.calls = first.computes = 0
    for m in members:
        m.__dict__["_lead"] = first
        m._drop_own()


def fuse(modules: list[Int8DynamicLinear], group: str, kernel: str | None = None) -> list[Int8FusedLinear]:
    """Int8FusedLinear members (in this order) computing what `modules` compute, as one GEMM
    (`kernel`: the group's, default the modules' own); `modules` are left unchanged. They must
    share input width, act, kernel, smoothing (the same input scale) and bias presence."""
    members = [Int8FusedLinear.member_of(m, group, i) for i, m in enumerate(modules)]
    if kernel is not None:
        for m in members:
            Int8DynamicLinear.set_kernel(m, kernel)
    _link(members)
    return members
