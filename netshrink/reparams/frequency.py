"""Frequency-domain weights (CNNpack, Wang et al. 2016): a layer's weight is the
inverse DCT of a sparse set of coefficients.

Layouts ("where the DCT is taken"):
    conv   each (kh, kw) kernel of an (out, in, kh, kw) weight is one 2-D DCT;
           coefficients have the weight's shape.
    block  an (out, in) FC weight is cut into (block, block) tiles (zero-padded), each
           one 2-D DCT; coefficients are (out/block, in/block, block, block).

The parametrisation's `original` tensor *is* the coefficient tensor (`right_inverse`
takes the DCT), so fine-tuning happens in the coefficient domain, and a fixed mask keeps
the discarded (low-energy) coefficients exactly zero.
"""
from __future__ import annotations

import torch

from netshrink.core.reparam import Reparam
from netshrink.functional.dct import dct2, from_blocks, idct2, to_blocks


def to_coef(w: torch.Tensor, *, layout: str, block: int) -> torch.Tensor:
    """Weight -> DCT coefficients in `layout` (see module docstring)."""
    if layout == "conv":
        return dct2(w)                                    # (out, in, kh, kw)
    return dct2(to_blocks(w, block=block))                # (nr, nc, b, b)


def from_coef(c: torch.Tensor, *, layout: str, shape: tuple[int, ...]) -> torch.Tensor:
    """DCT coefficients -> weight of `shape` (inverse of `to_coef`)."""
    if layout == "conv":
        return idct2(c)
    return from_blocks(idct2(c), rows=shape[0], cols=shape[1])


def layout_of(shape: tuple[int, ...]) -> str:
    return "conv" if len(shape) == 4 else "block"


class Frequency(Reparam):
    """coefficients (masked) -> weight. Example:

    >>> rp = Frequency((500, 800), mask=torch.ones(63, 100, 8, 8, dtype=torch.bool), block=8)
    """

    def __init__(self, shape: tuple[int, ...], *, mask: torch.Tensor, block: int = 8):
        super().__init__()
        self.shape, self.block, self.layout = tuple(shape), int(block), layout_of(tuple(shape))
        self.register_buffer("mask", mask.to(torch.bool))  # coefficient layout; True = kept

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return from_coef(c * self.mask, layout=self.layout, shape=self.shape)

    @torch.no_grad()
    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        c = to_coef(w, layout=self.layout, block=self.block)
        return torch.where(self.mask, c, torch.zeros((), dtype=c.dtype))

    @property
    def kept(self) -> float:
        return float(self.mask.float().mean())
