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


def global_masks(scores: list[torch.Tensor], *, sparsity: float, min_keep: float = 0.0) -> list[torch.Tensor]:
    """One threshold over all tensors (Blalock et al.'s global pruning), while every
    tensor keeps at least `min_keep` of its entries (its own largest)."""
    sizes = [s.numel() for s in scores]
    total_keep = keep_count(sum(sizes), sparsity)
    floors = [keep_count(n, 1 - min_keep) for n in sizes]
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
