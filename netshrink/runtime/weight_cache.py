"""A dense weight derived from stored tensors (buckets, DCT coefficients), built once
and reused until its source changes: the generated layers store few numbers but
compute with an ordinary dense weight."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn


class DerivedWeight:
    """Holds one derived tensor, rebuilt when `source` is modified (in place or replaced)."""

    def __init__(self):
        self.value: torch.Tensor | None = None
        self.key = None

    def get(self, source: torch.Tensor, build: Callable[[], torch.Tensor]) -> torch.Tensor:
        key = (source.data_ptr(), source._version)
        if self.value is None or self.key != key:
            with torch.no_grad():
                self.value = build().contiguous()
            self.key = key
        return self.value

    def clear(self) -> None:
        self.value, self.key = None, None


def stored_counts(weight_shape: tuple[int, ...], stored: torch.Tensor, bias: nn.Parameter | None) -> tuple[int, int]:
    """(dense parameter count, stored non-zeros) for `ns_counts` of a generated layer."""
    dense = int(torch.Size(weight_shape).numel()) + (bias.numel() if bias is not None else 0)
    nz = int((stored.detach() != 0).sum()) + (int((bias.detach() != 0).sum()) if bias is not None else 0)
    return dense, nz
