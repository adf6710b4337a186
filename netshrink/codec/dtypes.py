"""Tensor <-> raw bit patterns. Every encoding works on unsigned-integer views, so
NaN payloads, -0.0 and infinities survive bit-exactly and "zero" means all bits zero.
"""

from __future__ import annotations

import numpy as np
import torch

from netshrink.codec.validate import need

# name in the file -> (torch dtype, same-size signed int torch dtype, short label)
DTYPES: dict[str, tuple[torch.dtype, torch.dtype, str]] = {
    "float32": (torch.float32, torch.int32, "fp32"),
    "float16": (torch.float16, torch.int16, "fp16"),
    "bfloat16": (torch.bfloat16, torch.int16, "bf16"),
    "float64": (torch.float64, torch.int64, "fp64"),
    "int8": (torch.int8, torch.int8, "int8"),
    "uint8": (torch.uint8, torch.uint8, "uint8"),
    "int16": (torch.int16, torch.int16, "int16"),
    "int32": (torch.int32, torch.int32, "int32"),
    "int64": (torch.int64, torch.int64, "int64"),
    "bool": (torch.bool, torch.uint8, "bool"),
}
_NAME = {v[0]: k for k, v in DTYPES.items()}
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
FLOATS = ("float32", "float16", "bfloat16", "float64")


def name_of(dtype: torch.dtype) -> str | None:
    return _NAME.get(dtype)


def itemsize(name: str) -> int:
    return DTYPES[name][0].itemsize


def to_bits(t: torch.Tensor) -> np.ndarray:
    """(numel,) unsigned view of the tensor's bit patterns, native (little) endian."""
    _, as_int, _ = DTYPES[_NAME[t.dtype]]
    flat = t.detach().cpu().contiguous().reshape(-1).view(as_int)
    return flat.numpy().view(_UINT[t.dtype.itemsize])


def from_bits(u: np.ndarray, name: str, shape: list[int]) -> torch.Tensor:
    """Inverse of `to_bits`; `u` must be a fresh, writable (numel,) array."""
    dtype, as_int, _ = DTYPES[name]
    if name == "bool":
        need(u.size == 0 or int(u.max()) <= 1, "bool tensor holds a byte other than 0/1")
    arr = u.view(np.dtype(str(as_int).replace("torch.", "")))
    return torch.from_numpy(arr).view(dtype).reshape(shape)
