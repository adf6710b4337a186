"""Low-rank factorisation (Denton et al. 2014; Jaderberg et al. 2014) and its sketched
variant (Halko et al. 2011), as recipe steps.

`prepare` computes the factors of every targeted layer and physically replaces it
(Linear -> LowRankLinear, Conv1d/2d -> Tucker-2 TuckerConv, LSTM/GRU -> LowRankRNN,
smaller but not faster); the fine-tuning phase
then trains the factors, as in the papers. A layer whose chosen rank would not make
it smaller stays dense (and `ranks_` says so).

Rank selection (`mode`):
- "ratio":  per layer, the largest rank whose factors hold ≤ `ratio` of its weights;
- "energy": per layer, the smallest rank keeping `energy` of Σσ² (output energy when
            `data_aware`);
- "budget": one global budget, Σ factor weights ≤ `ratio` × Σ dense weights over the
            targeted Linear layers, ranks allocated greedily by energy per parameter
            (conv layers in this mode use `ratio` per layer);
- "rank":   a fixed rank (capped at min(out, in)).

`data_aware = true` whitens Linear layers by their input second moment on
`samples` training inputs, so the factors minimise the layer's output error
(conv layers always use plain Tucker-2).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from netshrink.core.batches import as_batches
from netshrink.core.context import PrepareContext
from netshrink.core.method import Method
from netshrink.core.submodules import set_submodule
from netshrink.core.targets import Site, is_hf_conv1d
from netshrink.errors import NetshrinkError, TargetError
from netshrink.functional import svd as F
from netshrink.functional.sketch import randomized_svd
from netshrink.runtime.low_rank import LowRankLinear, LowRankRNN, TuckerConv


def _supported(site: Site) -> bool:
    m = site.module
    if site.param_name != "weight":
        return False
    if _linear_like(m):
        return True
    return isinstance(m, (nn.Conv1d, nn.Conv2d)) and m.groups == 1


def _linear_like(m: nn.Module) -> bool:
    """nn.Linear, or transformers' Conv1D (GPT-2): the same map, weight stored (in, out)."""
    return isinstance(m, nn.Linear) or is_hf_conv1d(m)


def _out_in(site: Site) -> torch.Tensor:
    """A linear layer's weight as (out, in)."""
    w = site.tensor.detach()
    return w.T if is_hf_conv1d(site.module) else w


def _recurrent(site: Site) -> bool:
    """An input or hidden weight matrix of an LSTM / GRU without projections."""
    m = site.module
    return (isinstance(m, (nn.LSTM, nn.GRU)) and site.param_name.startswith("weight_")
            and not getattr(m, "proj_size", 0))


@dataclass
class LowRank(Method):
    """Truncated SVD of Linear layers and Tucker-2 of conv kernels, then fine-tuning."""

    name = "low_rank"
    summary = "low-rank factorisation: truncated SVD (plain or data-aware) of Linear, Tucker-2 of conv"

    mode: Literal["ratio", "energy", "budget", "rank"] = "ratio"
    ratio: float = 0.25
    energy: float = 0.9
    rank: int = 16
    data_aware: bool = False
    samples: int = 2048          # data_aware: training inputs the whitening is estimated on
    damp: float = 0.01
    tucker_iters: int = 2

    renamed: ClassVar[dict[str, str]] = {"calib_samples": "'samples'"}

    def validate(self):
        self.check(0.0 < self.ratio <= 1.0, "ratio", "in (0, 1]")
        self.check(0.0 < self.energy <= 1.0, "energy", "in (0, 1]")
        self.check(self.rank >= 1, "rank", "an integer >= 1")
        self.check(self.samples >= 1, "samples", "an integer >= 1")
        self.check(self.damp >= 0.0, "damp", ">= 0")
        self.check(self.tucker_iters >= 0, "tucker_iters", "an integer >= 0")

    # -- the factoriser (the sketch method swaps it) -----------------------------------
    def svd_fn(self) -> F.SvdFn:
        return F.full_svd

    def spectrum(self, a: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svdvals(a)

    # -- lifecycle ---------------------------------------------------------------------
    @torch.no_grad()
    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self.ranks_: dict = {}   # module name -> rank ([r_out, r_in] for conv), None = kept dense
        sites = self.sites(model)
        bad = [s.name for s in sites if not (_supported(s) or _recurrent(s))]
        if bad and self.targets.include:
            raise TargetError(f"{self.name}: cannot factorise {bad}; it handles Linear, Conv1d and Conv2d "
                              "(groups = 1) weights and LSTM / GRU weight matrices")
        recurrent = [s for s in sites if _recurrent(s)]
        sites = [s for s in sites if _supported(s)]
        if not sites and not recurrent:
            raise TargetError(f"{self.name}: no Linear, Conv or LSTM / GRU weight among the targets")
        linear = [s for s in sites if _linear_like(s.module)]
        conv = [s for s in sites if not _linear_like(s.module)]
        chol = self._whitening(model, linear, ctx) if self.data_aware else {}
        ranks = self._linear_ranks(linear, chol)
        new = {}
        for s in linear:
            w = _out_in(s)                                   # (out, in)
            r = ranks[s.name]
            if r > F.max_useful_rank(tuple(w.shape)):
                self.ranks_[s.module_name] = None   # no saving at this rank: stays dense
                continue
            if s.name in chol:
                a, b = F.whitened_factors(w, chol[s.name], rank=r, svd_fn=self.svd_fn())
            else:
                a, b = F.truncated_svd(w, rank=r, svd_fn=self.svd_fn())
            bias = s.module.bias.detach() if s.module.bias is not None else None
            new[s.module_name] = LowRankLinear.from_factors(a, b, bias)
            self.ranks_[s.module_name] = r
        for s in conv:
            w = s.tensor.detach()
            r_out, r_in = self._conv_ranks(w)
            o, i, k = w.shape[0], w.shape[1], w[0, 0].numel()
            if i * r_in + r_in * r_out * k + r_out * o >= o * i * k:
                self.ranks_[s.module_name] = None
                continue
            u_out, core, u_in = F.tucker2(w, ranks=(r_out, r_in), iters=self.tucker_iters, svd_fn=self.svd_fn())
            new[s.module_name] = TuckerConv.from_factors(s.module, u_out, core, u_in)
            self.ranks_[s.module_name] = [r_out, r_in]
        new.update(self._recurrent_layers(recurrent))
        for path, module in new.items():
            old = model.get_submodule(path)
            module.to(dtype=next(old.parameters()).dtype).train(old.training)
            set_submodule(model, path, module)

    def _recurrent_layers(self, sites: list[Site]) -> dict[str, nn.Module]:
        """LSTM / GRU modules with their weight matrices factorised (plain SVD; budget
        mode uses `ratio` per matrix)."""
        by_module: dict[str, list[Site]] = {}
        for s in sites:
            by_module.setdefault(s.module_name, []).append(s)
        out = {}
        for path, group in by_module.items():
            factors, ranks = {}, {}
            for s in group:
                w = s.tensor.detach()                                   # (gates·H, in)
                if self.mode == "rank":
                    r = min(self.rank, *w.shape)
                elif self.mode == "energy":
                    r = F.rank_for_energy(self.spectrum(w), energy=self.energy)
                else:
                    r = F.rank_for_ratio(tuple(w.shape), ratio=self.ratio)
                if r > F.max_useful_rank(tuple(w.shape)):
                    continue
                factors[s.param_name] = F.truncated_svd(w, rank=r, svd_fn=self.svd_fn())
                ranks[s.param_name] = r
            self.ranks_[path] = ranks or None
            if factors:
                out[path] = LowRankRNN.from_rnn(group[0].module, factors)
        return out

    # -- ranks -------------------------------------------------------------------------
    def _linear_ranks(self, sites: list[Site], chol: dict) -> dict[str, int]:
        shapes = [tuple(_out_in(s).shape) for s in sites]
        if self.mode == "rank":
            return {s.name: min(self.rank, *shape) for s, shape in zip(sites, shapes)}
        if self.mode == "ratio":
            return {s.name: F.rank_for_ratio(shape, ratio=self.ratio) for s, shape in zip(sites, shapes)}
        spectra = []
        for s in sites:
            w = _out_in(s)
            spectra.append(F.whitened_spectrum(w, chol[s.name]) if s.name in chol else self.spectrum(w))
        if self.mode == "energy":
            return {s.name: F.rank_for_energy(sp, energy=self.energy) for s, sp in zip(sites, spectra)}
        ranks = F.allocate_ranks(spectra, shapes, ratio=self.ratio)  # "budget"
        return {s.name: r for s, r in zip(sites, ranks)}

    def _conv_ranks(self, w: torch.Tensor) -> tuple[int, int]:
        o, i = w.shape[0], w.shape[1]
        if self.mode == "rank":
            return min(self.rank, o), min(self.rank, i)
        if self.mode == "energy":
            return (F.rank_for_energy(self.spectrum(F.unfold(w, 0)), energy=self.energy),
                    F.rank_for_energy(self.spectrum(F.unfold(w, 1)), energy=self.energy))
        return F.tucker2_ranks_for_ratio(tuple(w.shape), ratio=self.ratio)

    # -- calibration -------------------------------------------------------------------
    def _whitening(self, model: nn.Module, sites: list[Site], ctx: PrepareContext) -> dict[str, torch.Tensor]:
        """Cholesky factors of each targeted Linear's input second moment, from the
        first `samples` training inputs run through the model as it is now."""
        if ctx.data is None:
            raise NetshrinkError(f"{self.name}: data_aware needs calibration data (give compress_ `data=`, "
                                 "or Recipe.start(..., data=...))")
        sums = {s.name: None for s in sites}
        count = {s.name: 0 for s in sites}

        def hook_for(name):
            def hook(module, inputs):
                x = inputs[0].reshape(-1, inputs[0].shape[-1]).double()   # (N·.., in)
                g = x.T @ x                                               # (in, in)
                sums[name] = g if sums[name] is None else sums[name] + g
                count[name] += x.shape[0]
            return hook

        handles = [s.module.register_forward_pre_hook(hook_for(s.name)) for s in sites]
        was = model.training
        model.eval()
        try:
            b = as_batches(ctx.data)   # the first `samples` samples, any data shape (core.batches)
            with torch.no_grad():
                for batch in b.take(self.samples, batch_size=256):
                    b.call(model, batch)
        finally:
            for h in handles:
                h.remove()
            model.train(was)
        return {k: F.whitening(sums[k] / count[k], damp=self.damp) for k in sums if count[k]}


@dataclass
class Sketch(LowRank):
    """Low rank with factors from a randomised range finder (Halko et al. 2011):
    Gaussian or CountSketch test matrices, `power_iters` subspace iterations."""

    name = "sketch"
    summary = "low rank with randomised-SVD factors (Halko et al.): Gaussian or CountSketch sketches"

    mode: Literal["ratio", "rank"] = "ratio"
    sketch: Literal["gaussian", "countsketch"] = "gaussian"
    oversample: int = 10
    power_iters: int = 2
    seed: int = 0

    def validate(self):
        super().validate()   # mode: ratio or rank only (energy and budget need the full spectrum: low_rank)
        self.check(self.oversample >= 0, "oversample", "an integer >= 0")
        self.check(self.power_iters >= 0, "power_iters", "an integer >= 0")

    def svd_fn(self) -> F.SvdFn:
        g = torch.Generator().manual_seed(self.seed)

        def fn(a: torch.Tensor, rank: int):
            return randomized_svd(a, rank=rank, oversample=self.oversample, power_iters=self.power_iters,
                                  sketch=self.sketch, generator=g)
        return fn
