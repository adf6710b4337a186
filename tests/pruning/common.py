"""Shared checks of the pruning tests and conformance cases."""
import torch
from torch import nn

import netshrink as ns
from netshrink.functional.prune import as_matrix
from netshrink.runtime.sparse_linear import SparseLinear


def pruned_weights(model: nn.Module) -> list[torch.Tensor]:
    """Every prunable weight, dense, including those now held by SparseLinear."""
    ws = [s.tensor.detach() for s in ns.select(model)]
    ws += [m.dense_weight() for m in model.modules() if isinstance(m, SparseLinear)]
    assert ws, "no prunable weights to check"   # a loop over nothing would pass
    return ws


def sparsity_of(model: nn.Module) -> float:
    ws = pruned_weights(model)
    return 1 - sum(int((w != 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def pruned_at_least(target: float, tol: float = 0.002):
    def check(model, method):
        s = sparsity_of(model)
        assert s >= target - tol, f"sparsity {s:.4f} < target {target}"
    return check


def nm_exact(n: int, m: int):
    """Every complete group of m consecutive input weights holds exactly n non-zeros."""
    def check(model, method):
        for w in pruned_weights(model):
            mat = as_matrix(w)
            full = mat.shape[1] - mat.shape[1] % m
            counts = (mat[:, :full] != 0).reshape(mat.shape[0], -1, m).sum(-1)
            assert bool((counts == n).all()), f"groups with {counts.unique().tolist()} non-zeros, want {n}"
    return check


def whole_blocks(block: tuple[int, int], target: float):
    """Zeros come in whole (bh, bw) tiles and the block sparsity is reached."""
    def check(model, method):
        bh, bw = block
        for w in pruned_weights(model):
            mat = as_matrix(w)
            r, c = mat.shape[0] - mat.shape[0] % bh, mat.shape[1] - mat.shape[1] % bw
            tiles = (mat[:r, :c] != 0).reshape(r // bh, bh, c // bw, bw).sum(dim=(1, 3))
            assert bool(((tiles == 0) | (tiles == bh * bw)).all()), "a block is partly pruned"
        assert sparsity_of(model) >= target - 0.03
    return check
