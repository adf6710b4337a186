"""Depth pruning: remove whole blocks (residual blocks, layers) that contribute least.

A candidate is a child of an nn.Sequential / nn.ModuleList that has children of its
own (a block, not a lone activation), whose output has the shape of its input (a
residual block with an identity shortcut), and that can be replaced by nn.Identity
with the model still running and giving outputs of the same shape. Ranking:
- "loss": the increase of the run's loss (`loss=`: a train.losses.BatchLoss, a name or a
  callable; default auto: cross-entropy for class targets, MSE for float targets; a
  distillation loss toward the unpruned model for unlabelled data) on calibration
  batches when the block alone is bypassed (the lesion study of Veit et al. 2016: residual networks behave like
  ensembles of shallow paths, many blocks can go with little loss).
- "cosine": the Block Influence of ShortGPT (Men et al. 2024): 1 - cos(x_in, x_out)
  of the block, averaged over tokens / positions; a block that barely changes its
  input is redundant.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torch.utils._pytree import tree_leaves

from netshrink.core.batches import calibration_batches
from netshrink.core.submodules import set_submodule
from netshrink.structure.tracer import example_inputs
from netshrink.train.losses import as_batch_loss


def _shapes(out) -> list:
    return [tuple(t.shape) if isinstance(t, torch.Tensor) else None for t in tree_leaves(out)]


def candidates(model: nn.Module, example) -> list[str]:
    """Blocks whose output has their input's shape and that can be replaced by
    nn.Identity with the model still giving outputs of the same shape. `example`: a
    tensor, a tuple of inputs or a dict of keyword inputs."""
    inputs = example_inputs(example)
    blocks = []
    for name, parent in model.named_modules():
        if isinstance(parent, (nn.Sequential, nn.ModuleList)):
            for child_name, child in parent.named_children():
                if not isinstance(child, (nn.Sequential, nn.ModuleList)) and any(True for _ in child.children()):
                    blocks.append((f"{name}.{child_name}" if name else child_name, child))
    same = {}
    hooks = [b.register_forward_hook(lambda m, i, o, p=p: same.__setitem__(
        p, isinstance(o, torch.Tensor) and bool(i) and isinstance(i[0], torch.Tensor) and o.shape == i[0].shape))
        for p, b in blocks]
    was = model.training
    model.eval()
    out = []
    with torch.no_grad():
        try:
            ref = _shapes(inputs.call(model))
        finally:
            for h in hooks:
                h.remove()
        for path, child in blocks:
            if not same.get(path):
                continue
            set_submodule(model, path, nn.Identity())
            try:
                ok = _shapes(inputs.call(model)) == ref
            except Exception:  # the model does not run without the block
                ok = False
            finally:
                set_submodule(model, path, child)
            if ok:
                out.append(path)
    model.train(was)
    return out


@torch.no_grad()
def block_scores(model: nn.Module, blocks: list[str], data, *, criterion: str = "loss",
                 batches: int = 8, loss=None) -> dict[str, float]:
    """How much each block contributes (higher = keep)."""
    batch_loss = as_batch_loss(loss, "depth_prune")
    was = model.training
    model.eval()
    adapter, data_batches = calibration_batches(data, batches)
    out = {}
    if criterion == "loss":
        base = sum(float(batch_loss(adapter, model, batch)) for batch in data_batches)
        for path in blocks:
            blk = model.get_submodule(path)
            set_submodule(model, path, nn.Identity())
            try:
                out[path] = (sum(float(batch_loss(adapter, model, batch)) for batch in data_batches) - base) / len(
                    data_batches)
            finally:
                set_submodule(model, path, blk)
    else:  # cosine: 1 - cos(in, out) over channels, averaged over positions and samples
        stats = {p: [] for p in blocks}
        handles = []
        for path in blocks:
            def hook(mod, inp, outp, path=path):
                a, b = inp[0].flatten(2) if inp[0].dim() > 2 else inp[0].unsqueeze(-1), \
                    outp.flatten(2) if outp.dim() > 2 else outp.unsqueeze(-1)
                stats[path].append(float(1 - F.cosine_similarity(a, b, dim=1).mean()))
            handles.append(model.get_submodule(path).register_forward_hook(hook))
        try:
            for batch in data_batches:
                adapter.call(model, batch)
        finally:
            for h in handles:
                h.remove()
        out = {p: sum(v) / len(v) for p, v in stats.items()}
    model.train(was)
    return out


def remove_blocks(model: nn.Module, paths: list[str]) -> None:
    """Replace each block by nn.Identity (saved as a "replace" edit of the artifact)."""
    for path in paths:
        set_submodule(model, path, nn.Identity())
