"""Pure tensor maths of unstructured pruning: scores to masks.

All functions are keyword-only after the scores and return boolean keep-masks of
the scores' shapes (True = keep).
"""
from __future__ import annotations

import torch


def keep_count(numel: int, sparsity: float) -> int:
    """Weights kept at `sparsity`: round(numel x (1 - sparsity)), at least 0."""
    return max(0, min(numel, int(round(numel * (1.0 - sparsity)))))


def topk_mask(scores: torch.Tensor, *, sparsity: float) -> torch.Tensor:
    """Keep the round((1 - sparsity) x n) largest scores; ties broken by position
    (stable), so exactly that many survive."""
    k = keep_count(scores.numel(), sparsity)
    mask = torch.zeros(scores.numel(), dtype=torch.bool)
    if k:
        idx = torch.argsort(scores.reshape(-1).float(), descending=True, stable=True)[:k]
        mask[idx] = True
    return mask.reshape(scores.shape)


def global_masks(scores: list[torch.Tensor], *, sparsity: float, max_sparsity: float = 1.0) -> list[torch.Tensor]:
    """One threshold over all tensors (Blalock et al.'s global pruning), while every
    tensor loses at most `max_sparsity` of its entries (it keeps its own largest)."""
    sizes = [s.numel() for s in scores]
    total_keep = keep_count(sum(sizes), sparsity)
    floors = [keep_count(n, max_sparsity) for n in sizes]
    flat = torch.cat([s.reshape(-1).float() for s in scores])
    keep = torch.zeros_like(flat, dtype=torch.bool)
    # Each tensor's floor first, then the best of the rest globally.
    offset = 0
    for n, f in zip(sizes, floors):
        if f:
            local = torch.argsort(flat[offset:offset + n], descending=True, stable=True)[:f]
            keep[offset + local] = True
        offset += n
    rest = total_keep - int(keep.sum())
    if rest > 0:
        cand = flat.clone()
        cand[keep] = -float("inf")
        keep[torch.argsort(cand, descending=True, stable=True)[:rest]] = True
    out, offset = [], 0
    for s, n in zip(scores, sizes):
        out.append(keep[offset:offset + n].reshape(s.shape))
        offset += n
    return out


def as_matrix(t: torch.Tensor) -> torch.Tensor:
    """The 2-D view pattern pruning works on: (out, in x kernel...) for conv kernels,
    (rows, cols) for Linear / recurrent weights, (1, n) for vectors."""
    if t.dim() == 1:
        return t.reshape(1, -1)
    return t.reshape(t.shape[0], -1)


def nm_mask(scores: torch.Tensor, *, n: int, m: int) -> torch.Tensor:
    """N:M sparsity: in every group of `m` consecutive weights along the input
    dimension, keep the `n` with the largest scores (2:4 = NVIDIA's sparse tensor
    cores). A trailing partial group keeps min(n, its size).

    scores: any shape; grouped on `as_matrix(scores)` rows, i.e. (out, in) in groups
    of (out, in/m, m).
    """
    mat = as_matrix(scores).float()
    rows, cols = mat.shape
    pad = (-cols) % m
    # Padding scores -inf: a pad is never kept while a real weight is available.
    padded = torch.nn.functional.pad(mat, (0, pad), value=-float("inf"))
    groups = padded.reshape(rows, -1, m)                                 # (rows, groups, m)
    order = torch.argsort(groups, dim=-1, descending=True, stable=True)
    keep = torch.zeros_like(groups, dtype=torch.bool)
    keep.scatter_(-1, order[..., :n], True)
    keep &= groups > -float("inf")
    return keep.reshape(rows, -1)[:, :cols].reshape(scores.shape)


def block_mask(scores: torch.Tensor, *, block: tuple[int, int], sparsity: float) -> torch.Tensor:
    """Block sparsity (Narang et al. 2017, Gray et al. 2017): tile `as_matrix(scores)`
    into (bh, bw) blocks, score each block by its mean score (edge blocks by the mean
    of their real entries), and drop the lowest-scoring `sparsity` of the blocks.

    Returns a mask of `scores`' shape whose zeros are whole blocks.
    """
    bh, bw = block
    mat = as_matrix(scores).float()
    rows, cols = mat.shape
    ph, pw = (-rows) % bh, (-cols) % bw
    padded = torch.nn.functional.pad(mat, (0, pw, 0, ph))
    real = torch.nn.functional.pad(torch.ones_like(mat), (0, pw, 0, ph))
    gr, gc = padded.shape[0] // bh, padded.shape[1] // bw
    # (gr, bh, gc, bw) -> per-block sums over the (bh, bw) tile
    tile_sum = padded.reshape(gr, bh, gc, bw).sum(dim=(1, 3))
    tile_cnt = real.reshape(gr, bh, gc, bw).sum(dim=(1, 3))
    keep_blocks = topk_mask(tile_sum / tile_cnt, sparsity=sparsity)      # (gr, gc)
    full = keep_blocks.repeat_interleave(bh, 0).repeat_interleave(bw, 1)  # (gr*bh, gc*bw)
    return full[:rows, :cols].reshape(scores.shape)


def hamming_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Normalised Hamming distance between two masks: the fraction of entries where
    they differ (You et al. 2020's mask distance)."""
    return float((a != b).float().mean())
