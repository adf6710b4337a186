"""A fixed binary mask: w_eff = w * mask. Pruned entries are exactly zero in the
forward pass and get zero gradient, so fine-tuning keeps them zero."""
from __future__ import annotations

import torch

from netshrink.core.reparam import Reparam


class Mask(Reparam):
    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask

    def set(self, mask: torch.Tensor) -> None:
        self.mask.copy_(mask.to(torch.bool))

    @property
    def sparsity(self) -> float:
        return 1 - float(self.mask.float().mean())
