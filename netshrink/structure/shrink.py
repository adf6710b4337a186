"""Physical removal: coupled slices leave every tensor, modules get their new sizes.

The result is a plain, smaller nn.Module (Linear / Conv / BatchNorm / LSTM / GRU with
fewer features, BERT attention with fewer heads, torch's nn.MultiheadAttention
replaced by a PrunedMultiheadAttention with fewer heads) that the artifact saves as
replace / attrs edits of its factory's model.
"""
from __future__ import annotations

from collections import defaultdict

import torch
from torch import nn
from torch.utils._pytree import tree_leaves

from netshrink.core.submodules import set_submodule
from netshrink.errors import NetshrinkError
from netshrink.runtime.attention import PrunedMultiheadAttention
from netshrink.structure.blocks import fix_attributes
from netshrink.structure.graph import DependencyGraph, analyze
from netshrink.structure.rules import resizer
from netshrink.structure.tracer import example_inputs


def remove_components(model: nn.Module, graph: DependencyGraph, plan: dict[str, list[int]]) -> int:
    """Remove, in place, components `plan[group name]` (indices into group.components).
    Returns the number of components removed."""
    drops: dict[tuple[str, str], dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
    count = 0
    for g in graph.groups:
        idx = sorted(set(plan.get(g.name, [])))
        if not idx:
            continue
        if len(g) - len(idx) < g.min_keep:
            raise NetshrinkError(f"structure: removing {len(idx)} of {len(g)} units of group {g.name!r} "
                                 f"would leave fewer than {g.min_keep}")
        for i in idx:
            for (mod, param, dim, pos), _ in g.components[i].slots:
                drops[(mod, param)][dim].add(pos)
        count += len(idx)
    heads = _attention_to_prune(model, graph, plan)
    touched = set()
    with torch.no_grad():
        for (mod, param), dims in drops.items():
            m = model.get_submodule(mod)
            t = getattr(m, param)
            new = t.detach()
            for dim, pos in dims.items():
                keep = torch.tensor([i for i in range(new.shape[dim]) if i not in pos], dtype=torch.long)
                new = new.index_select(dim, keep)
            if isinstance(t, nn.Parameter):
                setattr(m, param, nn.Parameter(new.clone(), requires_grad=t.requires_grad))
            else:
                m._buffers[param] = new.clone()
            touched.add(mod)
    for mod in touched:  # size attributes (in/out_features ...) from the smaller tensors
        m = model.get_submodule(mod)
        resize = resizer(m)
        if resize is not None:
            resize(m)
    for path, idx in heads.items():
        model.get_submodule(path).heads_removed(idx)
    fix_attributes(model)
    return count


def _attention_to_prune(model: nn.Module, graph: DependencyGraph, plan: dict[str, list[int]]) -> dict:
    """Attention modules losing heads: torch's nn.MultiheadAttention becomes a
    PrunedMultiheadAttention with the same tensors (same names, so the slots still
    apply); returns {module path: head indices removed}."""
    out = {}
    for g in graph.groups:
        idx = sorted(set(plan.get(g.name, [])))
        if g.kind != "heads" or not g.block or not idx:
            continue
        m = model.get_submodule(g.block)
        if type(m) is nn.MultiheadAttention:
            set_submodule(model, g.block, PrunedMultiheadAttention.from_mha(m))
        elif not isinstance(m, PrunedMultiheadAttention):
            raise NetshrinkError(f"structure: {g.block!r} is a {type(m).__name__}, not an attention module "
                                 "whose heads netshrink can remove")
        out[g.block] = idx
    return out


def dead_components(model: nn.Module, graph: DependencyGraph) -> dict[str, list[int]]:
    """Components whose output is exactly zero: every producer slot ("out") and the
    BatchNorm scale and shift ("norm" weight / bias) are zero. Removing them leaves the
    model's outputs unchanged (up to float summation order)."""
    plan = {}
    for g in graph.groups:
        dead = []
        for i, c in enumerate(g.components):
            vals = [_slot_value(model, s) for s, role in c.slots
                    if role == "out" or (role == "norm" and s[1] in ("weight", "bias"))]
            if vals and all(float(v.abs().max()) == 0.0 for v in vals):
                dead.append(i)
        if len(g) - len(dead) < g.min_keep:
            dead = dead[: len(g) - g.min_keep]
        if dead:
            plan[g.name] = dead
    return plan


def _slot_value(model, slot) -> torch.Tensor:
    mod, param, dim, pos = slot
    return getattr(model.get_submodule(mod), param).detach().select(dim, pos)


def shrink(model: nn.Module, example, *, remove: dict[str, torch.Tensor] | None = None,
           graph: DependencyGraph | None = None) -> dict:
    """Physically remove units from `model` (in place) and return what was removed.

    remove: {module name: bool tensor over that module's output units (True = remove)},
        e.g. the `dead_units_` of a group-lasso / L0 / variational-dropout method (keys
        "rnn.weight_hh_l0" with masks over gate rows are read per hidden unit), or
        None to remove every unit whose output is exactly zero. A unit coupled with
        others (a residual stream's channel, produced by several convolutions) is
        removed only when every producer of it is marked; otherwise it is kept and
        listed in the result's "kept_coupled".

    >>> info = shrink(model, torch.zeros(2, 1, 28, 28), remove={"fc1": fc1_dead_mask})
    >>> info["removed"]   # {group name: units removed}
    """
    graph = graph or analyze(model, example)
    if remove is None:
        plan = dead_components(model, graph)
        kept = []
    else:
        plan, kept = _plan_from_masks(graph, _rnn_masks(model, remove))
    before = {g.name: len(g) for g in graph.groups}
    shapes = output_shapes(model, example)
    remove_components(model, graph, plan)
    check_runs(model, example, shapes)
    return {"removed": {k: len(v) for k, v in plan.items()}, "group_sizes": before, "kept_coupled": kept}


def _rnn_masks(model: nn.Module, remove: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Masks over an LSTM/GRU parameter's gate rows ("rnn.weight_hh_l0": (G*H,), as
    group lasso / L0 report them) become masks over hidden units: unit j is dead when
    its rows of every gate, in every reported parameter of that module, are dead."""
    out, per_module = {}, {}
    for key, mask in remove.items():
        mod, _, param = key.rpartition(".")
        m = model.get_submodule(mod) if mod else None
        if isinstance(m, (nn.LSTM, nn.GRU)) and param.startswith(("weight_", "bias_")):
            H = m.hidden_size
            unit = torch.as_tensor(mask).bool().reshape(-1, H).all(0)  # (G, H) -> (H,)
            per_module[mod] = per_module.get(mod, torch.ones(H, dtype=torch.bool)) & unit
        else:
            out[key] = mask
    out.update(per_module)
    return out


def _plan_from_masks(graph: DependencyGraph, remove: dict[str, torch.Tensor]):
    known = {p[0] for g in graph.groups for c in g.components for p in c.producers}
    for name, mask in remove.items():
        if name not in known:
            raise NetshrinkError(f"structure: {name!r} produces no prunable units "
                                 f"(prunable producers: {', '.join(sorted(known))})")
    plan, kept = {}, []
    for g in graph.groups:
        idx = []
        for i, c in enumerate(g.components):
            marks = [bool(remove[m][j]) if m in remove else None for m, j in c.producers]
            if any(marks):
                if all(marks):
                    idx.append(i)
                else:
                    kept.append((g.name, i))
        if len(g) - len(idx) < g.min_keep:  # a dead layer keeps its strongest unit: the shape stays valid
            idx = idx[: len(g) - g.min_keep]
        if idx:
            plan[g.name] = idx
    return plan, kept


def output_shapes(model: nn.Module, example) -> list:
    """Shapes of the model's output tensors on `example` (None for other leaves)."""
    args, kwargs = example_inputs(example)
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return [tuple(t.shape) if isinstance(t, torch.Tensor) else None
                    for t in tree_leaves(model(*args, **kwargs))]
    finally:
        model.train(was)


def check_runs(model: nn.Module, example, before: list | None = None) -> None:
    """The shrunk model runs on `example` and gives outputs of shapes `before`, else a NetshrinkError."""
    try:
        after = output_shapes(model, example)
    except Exception as e:  # a shape the analysis missed: say so instead of returning a broken model
        raise NetshrinkError(f"structure: the shrunk model no longer runs ({type(e).__name__}: {e}); "
                             "this is a dependency the analysis missed, please report it") from None
    if before is not None and after != before:
        raise NetshrinkError(f"structure: the shrunk model's outputs have shapes {after}, not {before}; "
                             "this is a dependency the analysis missed, please report it")
