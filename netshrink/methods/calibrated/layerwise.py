"""Sequential, layer-wise calibration shared by the one-shot methods.

    order, groups = discover(model, names, batches, calib)   # forward order of the target Linears
    for group in groups:                                      # [(name, module)], one shared input
        stats = collect(model, group, batches, calib, ...)    # one pass, stopped after the group
        process(group, stats)                                 # compress / replace these layers

A group is the target layers that read the very same input tensor (q, k, v of one
attention block), so that scaling methods see all the layers one scale must fit.
Statistics are streamed (H = 2/n X^T X, per-channel |x| sums and maxima, an optional
reservoir of rows), so memory is one layer's Hessian, not the activations; each pass
stops (a private exception) as soon as the group's last layer has read its input,
so the cost is about half a forward pass per group. Padding tokens are left out when
the batch carries an `attention_mask` that matches the layer input's leading dims.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from netshrink.core.batches import Batches, StopForward, run_each, token_mask
from netshrink.functional.hessian import HessianAccumulator


@dataclass
class Calibration:
    """Which calibration samples to use: the first `samples` of the data, in batches."""

    samples: int = 128
    batch_size: int = 16

    def batches(self, data: Batches) -> list:
        return data.take(self.samples, batch_size=self.batch_size)


def _input_of(args, kwargs) -> torch.Tensor:
    x = args[0] if args else next(iter(kwargs.values()))
    return x


@torch.no_grad()
def discover(model: nn.Module, modules: dict[str, nn.Module], data: Batches, batch) -> list[list[tuple[str, nn.Module]]]:
    """Groups of target modules in the order the first batch calls them; modules that
    read the same input tensor form one group. Modules never called are left out."""
    seen: list[tuple[str, nn.Module, int, tuple]] = []
    handles = []
    for name, mod in modules.items():
        def hook(m, args, kwargs, name=name):
            if not any(s[0] == name for s in seen):
                x = _input_of(args, kwargs)
                seen.append((name, m, x.data_ptr(), tuple(x.shape)))
        handles.append(mod.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        data.call(model, batch)
    finally:
        for h in handles:
            h.remove()
    groups: list[list[tuple[str, nn.Module]]] = []
    key = None
    for name, mod, ptr, shape in seen:
        if groups and (ptr, shape) == key:
            groups[-1].append((name, mod))
        else:
            groups.append([(name, mod)])
            key = (ptr, shape)
    return groups


@torch.no_grad()
def collect(model: nn.Module, group: list[tuple[str, nn.Module]], data: Batches, batches: list, *,
            hessian: bool = True, keep_rows: int = 0) -> HessianAccumulator:
    """Statistics of the group's shared input over the calibration batches."""
    first = group[0][1]
    d = first.in_features if hasattr(first, "in_features") else first.weight.shape[1]
    acc = HessianAccumulator(d, hessian=hessian, keep_rows=keep_rows)
    names = {id(m) for _, m in group}
    called: set[int] = set()
    current = {}

    def record(m, args, kwargs):
        if id(m) in called:
            return
        if not called:
            x = _input_of(args, kwargs)
            mask = token_mask(current["batch"], x)
            x = x.reshape(-1, d)
            acc.add(x[mask.reshape(-1)] if mask is not None else x)
        called.add(id(m))
        if called == names:
            raise StopForward     # the group has read its inputs

    handles = [m.register_forward_pre_hook(record, with_kwargs=True) for _, m in group]
    def before(batch):
        called.clear()
        current["batch"] = batch

    try:
        run_each(data, model, batches, before)
    finally:
        for h in handles:
            h.remove()
    return acc


def replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, new)
