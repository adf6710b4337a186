"""SparseConv2d: a pruned Conv2d computed as a CSR matrix product over unfolded
input patches (im2col), for the layers where that is measured faster than torch's
dense convolution.

The kernel (out, in, kh, kw) is stored as a CSR matrix (out, in*kh*kw) in three
buffers like SparseLinear; forward unfolds x (N, C, H, W) into patches
(N, C*kh*kw, L), multiplies W_csr @ patches as one (C*kh*kw, N*L) matrix, and folds the
result back to (N, out, oh, ow). Only groups = 1 and zero padding are supported
(other convolutions stay dense).

    >>> sp = SparseConv2d.from_conv(conv)            # conv: a pruned nn.Conv2d
    >>> torch.allclose(sp(x), conv(x), atol=1e-5)
    True
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from netshrink.runtime.sparse_linear import SparseLinear


class SparseConv2d(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride, padding, dilation, nnz: int,
                 bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.padding, self.dilation = tuple(padding), tuple(dilation)
        kh, kw = self.kernel_size
        # The (out, in*kh*kw) matrix and its bias live in a SparseLinear (same checks, same buffers).
        self.matmul = SparseLinear(in_channels * kh * kw, out_channels, nnz, bias)

    @staticmethod
    def supported(conv: nn.Module) -> bool:
        return (type(conv) is nn.Conv2d and conv.groups == 1 and conv.padding_mode == "zeros"
                and not isinstance(conv.padding, str))

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> "SparseConv2d":
        if not cls.supported(conv):
            raise ValueError("SparseConv2d handles Conv2d with groups = 1, numeric zero padding")
        flat = nn.Linear(conv.weight[0].numel(), conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            flat.weight.copy_(conv.weight.reshape(conv.out_channels, -1))   # (out, in*kh*kw)
            if conv.bias is not None:
                flat.bias.copy_(conv.bias)
        mm = SparseLinear.from_linear(flat)
        m = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                mm.nnz, conv.bias is not None)
        m.matmul = mm
        return m

    # -- artifact protocol ------------------------------------------------------------
    @property
    def weight(self) -> torch.Tensor:
        """The dense kernel (out, in, kh, kw), for code that reads a conv's `weight`
        (transformers' ViT reads its dtype); built per read, never stored."""
        return self.matmul.dense_weight().reshape(self.out_channels, self.in_channels, *self.kernel_size)

    def ns_config(self) -> dict:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels,
                "kernel_size": list(self.kernel_size), "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation), "nnz": self.matmul.nnz, "bias": self.matmul.bias is not None}

    @classmethod
    def from_ns_config(cls, cfg: dict) -> "SparseConv2d":
        pairs = [cfg["kernel_size"], cfg["stride"], cfg["padding"], cfg["dilation"]]
        if not all(isinstance(p, list) and len(p) == 2 and all(isinstance(v, int) and v >= 0 for v in p)
                   for p in pairs):
            raise ValueError("kernel_size, stride, padding, dilation must be pairs of integers")
        m = cls(int(cfg["in_channels"]), int(cfg["out_channels"]), *pairs, 0, bool(cfg["bias"]))
        kh, kw = m.kernel_size
        m.matmul = SparseLinear.from_ns_config({"in_features": m.in_channels * kh * kw,
                                                "out_features": m.out_channels, "nnz": int(cfg["nnz"]),
                                                "bias": bool(cfg["bias"])})
        return m

    def ns_after_load(self) -> None:
        self.matmul.ns_after_load()

    def ns_counts(self) -> tuple[int, int]:
        return self.matmul.ns_counts()

    def ns_flops(self, batch: int) -> tuple[int, int]:
        """Per output position: (dense, effective) for the last input's spatial size."""
        positions = getattr(self, "_positions", 1)
        d, e = self.matmul.ns_flops(batch * positions)
        return d, e

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)   # (N, C*kh*kw, L)
        oh = (h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // self.stride[0] + 1
        ow = (w + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // self.stride[1] + 1
        self._positions = oh * ow
        mm = self.matmul
        if mm._csr is None:
            mm.ns_after_load()
        rhs = cols.permute(1, 0, 2).reshape(cols.shape[1], -1)                           # (C*kh*kw, N*L)
        if mm.bias is not None:
            y = torch.addmm(mm.bias.unsqueeze(1), mm._csr, rhs)                           # (out, N*L)
        else:
            y = torch.sparse.mm(mm._csr, rhs)
        return y.reshape(self.out_channels, n, oh * ow).permute(1, 0, 2).reshape(n, self.out_channels, oh, ow)
