"""SparseGPT (Frantar & Alistarh 2023): one-shot pruning with the OBS weight update.

    W: (rows, cols); H = 2 X^T X; U = upper Cholesky factor of (H + damp)^-1.
    For each block of `block_size` columns, the mask is chosen from the OBS saliency
    w_iq^2 / [H^-1]_qq^2 (with U_qq^2 standing for [H^-1]_qq of the remaining columns):
      unstructured: the `sparsity` fraction of the block's (rows x B) weights with the
                    smallest saliency;
      n:m           (n kept of every m consecutive inputs): per row, at the start of each
                    group of m columns, the m - n with the smallest saliency.
    Then column by column: pruned weights are set to 0 and the error e = (w_q - 0) / U_qq
    updates the block's later columns, W[:, q:] -= e U_{q, q:}; the block's errors update
    the columns after it at once (lazy batch update), exactly as in GPTQ.
"""
from __future__ import annotations

import torch

from netshrink.functional.hessian import inverse_cholesky, prepare_hessian


@torch.no_grad()
def sparsegpt_prune(weight: torch.Tensor, hessian: torch.Tensor, *, sparsity: float = 0.5, n: int = 0,
                    m: int = 0, damp: float = 0.01, block_size: int = 128) -> tuple[torch.Tensor, float]:
    """weight (rows, cols), hessian (cols, cols) -> (pruned and updated weight, OBS loss).
    n, m > 0: n:m semi-structured (n non-zeros kept in every m); else unstructured `sparsity`."""
    rows, cols = weight.shape
    h, w = prepare_hessian(hessian, weight, damp=damp)
    u = inverse_cholesky(h)
    if m:
        block_size = max(m, block_size // m * m)   # an n:m group never straddles two blocks
    loss = 0.0
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        w1, err1, u1 = w[:, i1:i2].clone(), torch.zeros(rows, i2 - i1), u[i1:i2, i1:i2]
        d = torch.diag(u1)                                                 # (B,)
        if m:
            mask = torch.zeros_like(w1, dtype=torch.bool)
        else:
            sal = w1 ** 2 / d[None, :] ** 2                                 # (rows, B)
            k = int(sal.numel() * sparsity)
            mask = torch.zeros_like(w1, dtype=torch.bool)
            if k:
                idx = torch.topk(sal.flatten(), k, largest=False).indices
                mask.view(-1)[idx] = True
        for i in range(i2 - i1):
            if m and i % m == 0:
                sal = w1[:, i:i + m] ** 2 / d[None, i:i + m] ** 2           # (rows, <= m)
                drop = max(sal.shape[1] - n, 0)
                if drop:
                    mask[:, i:i + m].scatter_(1, torch.topk(sal, drop, dim=1, largest=False).indices, True)
            wc = w1[:, i]
            qc = torch.where(mask[:, i], torch.zeros_like(wc), wc)
            e = (wc - qc) / d[i]
            loss += float((e ** 2).sum()) / 2
            w1[:, i:] -= e[:, None] * u1[i, i:][None, :]
            w1[:, i] = qc
            err1[:, i] = e
        w[:, i1:i2] = w1
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    return w, loss
