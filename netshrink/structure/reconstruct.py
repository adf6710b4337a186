"""OBS saliency of structured units and the least-squares update of their consumers
(ZipLM: Kurtic, Frantar, Alistarh 2023, "ZipLM: Inference-Aware Structured Pruning of
Language Models"; the closed form of Optimal Brain Compression / SlimGPT for removing
whole input columns).

A consumer Linear y = W x + b reads a unit through the input columns M of W. With
calibration inputs x augmented by a constant-1 channel (so the bias is one more column,
and can absorb the removed inputs' mean: FLAP's bias compensation is the special case),
H = sum_t x_t x_t^T + damp * mean(diag H) * I, float64, and K the columns kept (the
ones channel always among them):

    saliency(M) = sum over output rows of  w_M^T ((H^-1)_MM)^-1 w_M   (the output error removing M costs)
    W'_K        = (W H[:, K]) H[K, K]^-1                              (the least-squares re-fit of the rest)

the ones channel's coefficient of W'_K being the new bias (a Linear without bias has no
ones channel). Removing more columns from K is the same problem on the sub-matrix
H[K, K] with the re-fitted W'_K, so greedy selection needs no second calibration pass.
Every consumer's H comes from one pass over the model before any removal (not layer by
layer on the already-pruned model's inputs, as ZipLM's sequential pass): each layer
re-fits its own original output on the original inputs, one forward per batch in all.

Only nn.Linear consumers are measured and updated; a unit read by other modules (conv,
LSTM, LayerNorm, a Linear whose forward is never called, as nn.MultiheadAttention's
out_proj) is left as it is, and a group with any unit that no measured Linear reads is
ranked by the l2 norm of its producer weights instead.

    stats = consumer_stats(model, graph, data, batches=8)         # before any removal
    s = obs_scores(model, graph, stats)                           # {group: (n,) saliency}
    p = greedy(model, graph, stats, plan(graph, s, 0.25), steps=4)
    refit(model, graph, stats, p)                                 # kept columns re-solved in place
    remove_components(model, graph, p)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from netshrink.core.batches import calibration_batches, run_each, token_mask
from netshrink.errors import NetshrinkError
from netshrink.functional.hessian import HessianAccumulator
from netshrink.structure.groups import Component, DependencyGraph


@dataclass
class ConsumerStats:
    """sum_t x_t x_t^T (d (+1), d (+1)) float64 of one Linear's input over `n` tokens; the
    last channel is the constant 1 when the layer has a bias (`ones`)."""

    xtx: torch.Tensor
    ones: bool
    n: int


def linear_consumers(model: nn.Module, graph: DependencyGraph) -> dict[str, nn.Linear]:
    """The Linears some component of the graph reads through input columns of its weight."""
    out: dict[str, nn.Linear] = {}
    for g in graph.groups:
        for c in g.components:
            for (mod, param, dim, _), role in c.slots:
                if role == "in" and param == "weight" and dim in (1, -1) and mod not in out:
                    m = model.get_submodule(mod)
                    if isinstance(m, nn.Linear):
                        out[mod] = m
    return out


def columns(c: Component, consumers) -> dict[str, list[int]]:
    """{consumer Linear: the input columns of its weight that component `c` owns}."""
    out: dict[str, list[int]] = {}
    for (mod, param, dim, pos), role in c.slots:
        if role == "in" and param == "weight" and dim in (1, -1) and mod in consumers:
            out.setdefault(mod, []).append(pos)
    return out


@torch.no_grad()
def consumer_stats(model: nn.Module, graph: DependencyGraph, data, batches: int = 8) -> dict[str, ConsumerStats]:
    """One calibration pass (forward pre-hooks) giving each Linear consumer's input
    Hessian, padding tokens left out when the batch has a matching attention_mask.
    Linears never called (n = 0) are left out of the result."""
    consumers = linear_consumers(model, graph)
    accs = {name: HessianAccumulator(m.in_features + (m.bias is not None)) for name, m in consumers.items()}
    current: dict = {}

    def hook(name):
        def f(mod, args, kwargs):
            x = args[0] if args else next(iter(kwargs.values()))
            mask = token_mask(current.get("batch"), x)
            x = x.detach().reshape(-1, mod.in_features)
            if mask is not None:
                x = x[mask.reshape(-1)]
            x = x.to("cpu", torch.float64)   # the accumulator lives on the CPU
            if mod.bias is not None:
                x = torch.cat([x, x.new_ones(x.shape[0], 1)], 1)
            accs[name].add(x)
        return f

    b, calib = calibration_batches(data, batches)
    if not calib:
        raise NetshrinkError("structure: the calibration data is empty")
    handles = [m.register_forward_pre_hook(hook(name), with_kwargs=True) for name, m in consumers.items()]
    was = model.training
    model.eval()   # dropout off: fit the model as it will run
    try:
        run_each(b, model, calib, lambda batch: current.__setitem__("batch", batch))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return {name: ConsumerStats(a.xtx, consumers[name].bias is not None, a.n)
            for name, a in accs.items() if a.n > 0}


def _cholesky(h: torch.Tensor) -> torch.Tensor:
    """Lower Cholesky factor of a symmetric H; a numerically indefinite H (fewer tokens
    than inputs, damp = 0) gets a little extra damping, as functional.hessian does."""
    boost = 0.0
    eye = torch.eye(h.shape[0], dtype=h.dtype)
    for _ in range(8):
        L, info = torch.linalg.cholesky_ex(h + boost * eye)
        if int(info) == 0:
            return L
        boost = max(boost * 10, 1e-8 * float(torch.diag(h).mean()))
    raise NetshrinkError("structure: a consumer's input Hessian is not positive definite even after extra damping")


class Consumer:
    """One Linear consumer's least-squares problem: the damped Hessian, the original
    augmented weight [W, b] and the columns removed so far."""

    def __init__(self, module: nn.Linear, st: ConsumerStats, damp: float):
        h = st.xtx.clone()
        self.live = torch.diag(h) != 0          # a channel always zero on the data (a dead ReLU)
        h[~self.live, ~self.live] = 1.0         # keeps H invertible; its weight stays as it is (below)
        h += damp * float(torch.diag(h).mean()) * torch.eye(h.shape[0], dtype=h.dtype)
        self.h = h
        w = module.weight.detach().to("cpu", torch.float64)
        if st.ones:
            w = torch.cat([w, module.bias.detach().to("cpu", torch.float64)[:, None]], 1)
        self.w, self.module, self.ones = w, module, st.ones
        self.removed = torch.zeros(h.shape[0], dtype=torch.bool)

    def solve(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(kept columns K, W'_K = (W H[:, K]) H[K, K]^-1, H[K, K]^-1)."""
        k = torch.nonzero(~self.removed).flatten()
        L = _cholesky(self.h[k][:, k])
        rhs = (self.w @ self.h[:, k]).t()                     # (|K|, out)
        wk = torch.cholesky_solve(rhs, L).t()
        return k, wk, torch.cholesky_inverse(L)

    def saliency(self, comps: list[list[int]]) -> torch.Tensor:
        """(len(comps),) output error of removing each column set from the current K (all kept)."""
        k, wk, hinv = self.solve()
        wk = wk * self.live[k].to(wk.dtype)   # a dead input contributes nothing to the output
        where = torch.full((self.h.shape[0],), -1, dtype=torch.long)
        where[k] = torch.arange(len(k))
        out = torch.zeros(len(comps), dtype=torch.float64)
        by_size: dict[int, list[int]] = {}
        for i, cols in enumerate(comps):
            by_size.setdefault(len(cols), []).append(i)
        for m, ids in by_size.items():   # one batched solve per column count (a neuron: 1, a head: head_dim)
            idx = where[torch.tensor([comps[i] for i in ids], dtype=torch.long)]   # (n, m)
            a = hinv[idx[:, :, None], idx[:, None, :]]                            # (n, m, m): (H^-1)_MM
            wm = wk[:, idx]                                                        # (out, n, m)
            if m == 1:
                s = (wm[..., 0] ** 2).sum(0) / a[:, 0, 0]
            else:
                s = torch.einsum("onm,nmk,onk->n", wm, torch.linalg.inv(a), wm)
            out[torch.tensor(ids)] = s
        return out

    @torch.no_grad()
    def write(self) -> None:
        """Put W'_K into the module's kept columns (and the ones coefficient into its bias);
        the removed columns keep their values until remove_components drops them."""
        k, wk, _ = self.solve()
        wt = self.module.weight
        if self.ones:
            self.module.bias.copy_(wk[:, -1].to(self.module.bias.dtype))
            k, wk = k[:-1], wk[:, :-1]
        wt[:, k.to(wt.device)] = wk.to(wt.device, wt.dtype)


def _consumers(model, stats, damp) -> dict[str, Consumer]:
    return {name: Consumer(model.get_submodule(name), st, damp) for name, st in stats.items()}


def _measured(graph: DependencyGraph, cons: dict) -> dict[str, list[dict[str, list[int]]]]:
    """{group name: per component its columns in the measured consumers}, for the groups
    every component of which some measured consumer reads."""
    out = {}
    for g in graph.groups:
        cols = [columns(c, cons) for c in g.components]
        if all(cols):
            out[g.name] = cols
    return out


def _saliencies(cons: dict[str, Consumer], measured: dict, alive: dict[str, list[int]]) -> dict[str, torch.Tensor]:
    """{group: (n,) saliency summed over its consumers} of the components in `alive`
    (the others get +inf: they are already gone)."""
    out = {name: [float("inf")] * len(cols) for name, cols in measured.items()}
    for cname, con in cons.items():
        keys, comps = [], []
        for gname, cols in measured.items():
            for i in alive[gname]:
                if cname in cols[i]:
                    keys.append((gname, i))
                    comps.append(cols[i][cname])
        if not comps:
            continue
        s = con.saliency(comps)
        for (gname, i), v in zip(keys, s.tolist()):
            o = out[gname]
            o[i] = v if o[i] == float("inf") else o[i] + v
    return {name: torch.tensor(v, dtype=torch.float64) for name, v in out.items()}


def obs_scores(model: nn.Module, graph: DependencyGraph, stats: dict[str, ConsumerStats], *,
               damp: float = 0.01) -> dict[str, torch.Tensor]:
    """{group: (n,) OBS saliency} (higher = keep) of the groups whose every unit a measured
    Linear reads; structure.importance.obs_importance ranks the others by l2."""
    cons = _consumers(model, stats, damp)
    measured = _measured(graph, cons)
    sal = _saliencies(cons, measured, {g: list(range(len(c))) for g, c in measured.items()})
    return {k: v.float() for k, v in sal.items()}


def greedy(model: nn.Module, graph: DependencyGraph, stats: dict[str, ConsumerStats], plan: dict[str, list[int]],
           *, steps: int = 4, damp: float = 0.01) -> dict[str, list[int]]:
    """The plan's per-group counts, with the units chosen in `steps` chunks: each chunk
    removes the lowest-saliency units given the earlier chunks' removal and re-fit
    (saliencies from the sub-matrix of H; no new calibration pass). The counts (hence
    the allocation across groups of a global / FLOPs / latency plan) stay the plan's;
    groups not measured keep the plan's units."""
    cons = _consumers(model, stats, damp)
    measured = _measured(graph, cons)
    out = {g: list(v) for g, v in plan.items() if g not in measured}
    chosen: dict[str, list[int]] = {g: [] for g in measured}
    for step in range(1, steps + 1):
        gone = {g: set(v) for g, v in chosen.items()}
        alive = {g: [i for i in range(len(cols)) if i not in gone[g]] for g, cols in measured.items()}
        sal = _saliencies(cons, measured, alive)
        for g in measured:
            need = round(len(plan.get(g, [])) * step / steps) - len(chosen[g])
            if need > 0:
                order = torch.argsort(sal[g], stable=True)[:need].tolist()
                chosen[g] += order
                for i in order:
                    for cname, cols in measured[g][i].items():
                        cons[cname].removed[cols] = True
    out.update({g: sorted(v) for g, v in chosen.items() if v})
    return out


def refit(model: nn.Module, graph: DependencyGraph, stats: dict[str, ConsumerStats], plan: dict[str, list[int]],
          *, damp: float = 0.01) -> list[str]:
    """Re-solve, in place, every measured Linear consumer's kept input columns and bias
    by least squares for the removal `plan` (call it before remove_components, which then
    drops the removed columns). Returns the consumers updated."""
    cons = _consumers(model, stats, damp)
    touched = set()
    for g in graph.groups:
        for i in plan.get(g.name, []):
            for cname, cols in columns(g.components[i], cons).items():
                cons[cname].removed[cols] = True
                touched.add(cname)
    for cname in sorted(touched):
        cons[cname].write()
    return sorted(touched)
