"""`awq` (Lin et al. 2024) and `smoothquant` (Xiao et al. 2023): per-input-channel scaling
from calibration activations, then quantization.

    >>> ns.create("awq", bits=4, group_size=128)                  # weight-only, alpha searched per group
    >>> ns.create("smoothquant", alpha=0.5)                       # W8A8: int8 weights, per-token int8 activations

Each layer group (the layers reading one input) gets one scale s; every Linear in it
becomes a ScaledLinear (W diag(s), input * 1/s kept explicit: in the encoder blocks
this library meets, each input is a LayerNorm output that also feeds the residual, or
a GELU output, so no earlier op can absorb 1/s exactly) or, for smoothquant's
execute = "int8", an Int8DynamicLinear carrying the same input scale.

Per-layer choices from calibration (smoothquant, execute = "int8"): `search = true` takes,
per group, the scaling with the least relative output error on 2,048 sampled calibration
rows, run through the int8 kernel itself, among none (s = 1: no pass over the input at
run time) and alpha in ALPHA_GRID + [alpha]; `act = "auto"` first makes every group
"token_scale", measures the model's output error on `check_samples` calibration samples (real tokens)
with each group alone per-tensor ("tensor": fbgemm's own dynamic range, no per-token
passes, fbgemm at every size), and makes groups per-tensor in the order of most
multiply-adds per unit of error added, each kept while the error stays within
act_tolerance x the all-"token_scale" error (a knapsack's greedy). `per_layer` fixes the act
of the layers its patterns match (a group takes its first matched value; "auto" leaves it).
A per-tensor layer's scale s reads every row of the calibration inputs, padding included:
at run time fbgemm's one range covers every row of a padded batch. Each layer's
act, alpha and kernel are in its module's config; the report (`run.method("smoothquant").report_`)
has the errors that decided them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from netshrink.core.batches import as_batches, output_tensor, token_mask
from netshrink.core.context import PrepareContext
from netshrink.core.targets import PerLayer
from netshrink.functional.awq import awq_search, smooth_scale
from netshrink.functional.gptq import rtn_quantize
from netshrink.functional.hessian import HessianAccumulator
from netshrink.methods.calibrated.base import OneShot, layer_value
from netshrink.methods.calibrated.kernels import choose_kernel, fusable, fuse_group
from netshrink.methods.calibrated.layerwise import Calibration, replace
from netshrink.runtime.int8_dynamic import Int8DynamicLinear
from netshrink.runtime.scaled_linear import ScaledLinear

ALPHA_GRID = (0.25, 0.5, 0.65, 0.75, 0.85, 0.95)   # smoothquant search's alphas, besides none and its own
# act "static" with search: the calibrated range [lo, hi] shrunk by each of these (a finer
# grid for the many values near 0; the few past it are clipped), chosen by output error
CLIP_GRID = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
SEARCH_ROWS = 2048
# fusion is kept where the model's relative squared output error against the unfused
# layers stays below this (fp32 calls of a wider GEMM round differently; int8 calls are equal)
FUSE_TOLERANCE = 1e-8
# a fold is kept where it moves the model's output by less than this fraction of the
# int8 model's own error against fp32 (squared, relative): rounding, not a change
FOLD_TOLERANCE = 0.01


def _plain(group) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in group if type(m) is nn.Linear]


@dataclass
class AWQ(OneShot):
    name = "awq"
    summary = "AWQ activation-aware weight quantization: s = mean|x|^alpha, alpha searched per layer (Lin et al. 2024)"
    needs_hessian = False
    keep_rows = 2048               # sampled input rows for the output-error search

    bits: int = 4
    granularity: Literal["channel", "group"] = "group"
    group_size: int = 128
    symmetric: bool = False
    grid: int = 20                 # alphas 0, 1/grid, ..., (grid-1)/grid

    def validate(self):
        super().validate()
        self.check(2 <= self.bits <= 8, "bits", "an integer in 2..8")
        self.check(self.group_size >= 1, "group_size", "an integer >= 1")
        self.check(self.grid >= 1, "grid", "an integer >= 1")

    def _quant(self, cols: int):
        g = self.group_size if self.granularity == "group" and cols % self.group_size == 0 else 0
        return lambda w: rtn_quantize(w, bits=self.bits, group_size=g, symmetric=self.symmetric)

    def process(self, model: nn.Module, group: list[tuple[str, nn.Module]], stats: HessianAccumulator) -> None:
        group = _plain(group)
        if not group:
            return
        weights = [m.weight.detach().float() for _, m in group]
        quant = self._quant(weights[0].shape[1])
        s, alpha, err = awq_search(weights, stats.rows, stats.mean_abs, quant, grid=self.grid)
        for name, mod in group:
            new = ScaledLinear.from_linear(mod, s)
            with torch.no_grad():
                new.weight.copy_(quant(new.weight.detach()))
            replace(model, name, new)
            self.report_[name] = {"alpha": alpha, "error": err}


@dataclass
class SmoothQuant(OneShot):
    name = "smoothquant"
    summary = "SmoothQuant W8A8: s = max|x|^a / max|w|^(1-a) moves outliers into weights; int8 kernels (Xiao et al. 2023)"
    needs_hessian = False

    alpha: float = 0.5
    # weight bits per output channel, symmetric (execute "int8"): 7 keeps every code within
    # [-64, 64], where fbgemm takes 8-bit activations on CPUs without VNNI (runtime.int8_linear.reduce_range)
    bits: int = 8
    # "int8": Int8DynamicLinear (int8 weights per channel, per-token int8 activations);
    # "float": only the scaling (ScaledLinear), for a later `gptq` with execute = "int8".
    execute: Literal["int8", "float"] = "int8"
    # "auto": per layer group, per-tensor where the model's output stays within
    # act_tolerance x the error with per-token scales everywhere, "token_scale" elsewhere.
    # "static": one calibrated range per layer input, its `outlier_channels` largest channels
    # kept exact beside the int8 GEMM (LLM.int8()'s decomposition, channels fixed here); bits <= 7
    act: Literal["token", "tensor", "token_scale", "static", "auto"] = "token"
    outlier_channels: int = 8
    kernel: Literal["auto", "measure", "fbgemm", "fp32", "by_size"] = "auto"
    # per group, the scaling with the least output error on sampled calibration rows among
    # none (s = 1, no pass over the input at run time) and alpha in ALPHA_GRID + [alpha]; act
    # "static": then, for that scaling, the range (CLIP_GRID times the calibrated min-max)
    search: bool = False
    # false: no input scaling at all (s = 1: W8A8 as is, no pass over the input); act
    # "static" then leans on its outlier channels, and `search` still picks each range
    smooth: bool = True
    act_tolerance: float = 1.5
    check_samples: int = 32        # calibration samples of the end-to-end checks of act "auto"
    # act by target pattern ("token", "tensor", "token_scale"); such layers are not tried by "auto"
    per_layer: PerLayer[str] = field(default_factory=PerLayer)
    # the int8 layers of one input group (q / k / v) as one GEMM (Int8FusedLinear): the input
    # scaled and quantized once; kept only where the model's outputs stay those of the unfused
    # layers (FUSE_TOLERANCE) and each input is computed once
    fuse: bool = False
    # a layer's input scale 1/s moved into the int8 layer that produces that input (its output
    # channels: the value projection before attention's output projection), where the
    # consumer's input is measured channel-wise linear in the producer's output and the
    # model's output moves by less than FOLD_TOLERANCE of the int8 error: one pass fewer
    fold: bool = False

    def validate(self):
        super().validate()
        self.check(0.0 <= self.alpha <= 1.0, "alpha", "in [0, 1]")
        self.check(2 <= self.bits <= 8, "bits", "an integer in 2..8")
        self.check(self.act_tolerance >= 1.0, "act_tolerance", "a number >= 1")
        self.check(self.check_samples >= 1, "check_samples", "an integer >= 1")
        self.check(all(v in ("token", "tensor", "token_scale", "static") for _, v in self.per_layer.items()),
                   "per_layer", 'a table of pattern = "token" / "tensor" / "token_scale" / "static" (their act)')
        static = self.act == "static" or any(v == "static" for _, v in self.per_layer.items())
        self.check(not static or self.bits <= 7, "bits",
                   '<= 7 with act "static" (codes within [-64, 64]: 8-bit activations cannot saturate fbgemm)')
        self.check(self.outlier_channels >= 0, "outlier_channels", "an integer >= 0")
        self.check(not (self.execute == "float" and (self.search or self.act == "auto")), "execute",
                   '"int8" with search or act = "auto" (both measure the int8 kernels)')
        self.check(self.smooth or self.execute == "int8", "smooth", 'true with execute = "float" (the scaling is all it does)')

    @property
    def keep_rows(self) -> int:        # sampled input rows for the output-error comparisons
        return SEARCH_ROWS if (self.search or self.act == "auto") else 0

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self._groups: list[tuple[list[str], float]] = []
        late = (self.fuse or self.fold) and self.execute == "int8" and ctx.data is not None
        if late:
            data = as_batches(ctx.data)
            checks = Calibration(self.check_samples, self.calib_batch).batches(data)
            fp32 = main_outputs(model, data, checks) if self.fold else None   # the fold's yardstick
        self._prepare(model, ctx)
        if late and self.fold:
            fold_input_scales(model, data, self._groups, self.report_, checks, fp32)
        if late and self.fuse:
            fuse_groups(model, data, self._groups, self.report_, self.kernel, checks)
        self._groups = []

    def _prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        self._alt: dict[str, Int8DynamicLinear] = {}
        self._order: list[list[str]] = []
        self._all_rows_max: dict[str, torch.Tensor] = {}
        per_tensor = self.act in ("tensor", "auto") or any(v == "tensor" for _, v in self.per_layer.items())
        if self.execute == "int8" and per_tensor and ctx.data is not None:
            self._all_rows_max = _input_max_all_rows(model, self.target_modules(model), as_batches(ctx.data),
                                                     Calibration(self.samples, self.calib_batch))
        if self.act != "auto" or ctx.data is None:
            super().prepare(model, ctx)
            return
        data = as_batches(ctx.data)
        checks = Calibration(self.check_samples, self.calib_batch).batches(data)
        was = model.training
        model.eval()
        try:
            refs = main_outputs(model, data, checks)
            super().prepare(model, ctx)                    # every group token_scale, per-tensor kept aside
            e0 = relative_error(main_outputs(model, data, checks), refs)
            budget = self.act_tolerance * e0

            def trial(names):          # the model's error with these groups per-tensor
                for n in names:
                    replace(model, n, self._alt[n])
                return relative_error(main_outputs(model, data, checks), refs)

            # each group alone first, then a knapsack's greedy order: the most multiply-adds
            # made per-tensor per unit of error added first, each kept while the total fits
            gain = []
            for names in self._order:
                old = {n: model.get_submodule(n) for n in names}
                alone = trial(names)
                for n in names:
                    replace(model, n, old[n])
                    self.report_[n]["model_error_alone"] = alone
                macs = sum(self._alt[n].in_features * self._alt[n].out_features for n in names)
                gain.append((max(alone - e0, 0.0) / macs, names))
            for _, names in sorted(gain, key=lambda t: t[0]):
                old = {n: model.get_submodule(n) for n in names}
                e = trial(names)
                keep = e <= budget
                for n in names:
                    tensor = self.report_[n].pop("tensor")
                    if keep:
                        self.report_[n].update(tensor)
                    else:
                        replace(model, n, old[n])
                    self.report_[n].update(model_error_tried=e, model_error_token=e0)
        finally:
            model.train(was)
            self._alt, self._order = {}, []

    def _candidate(self, mod: nn.Linear, s: torch.Tensor | None, act: str,
                   stats: HessianAccumulator | None = None) -> Int8DynamicLinear:
        w = mod.weight.detach().float()
        k = min(self.outlier_channels, w.shape[1]) if act == "static" else 0
        if s is None:
            q = Int8DynamicLinear.from_weight(w, mod.bias, act=act, bits=self.bits, outliers=k)
        else:
            q = Int8DynamicLinear.from_weight(w * s[None, :], mod.bias, input_scale=1.0 / s, act=act,
                                              bits=self.bits, outliers=k)
        if act == "static":
            q.set_static(*static_range(stats.lo, stats.hi, s, k))
        return q

    @torch.no_grad()
    def _best(self, group, stats: HessianAccumulator, act: str):
        """(alpha or None, {name: module}, relative output error on the sampled rows, clip)."""
        weights = [m.weight.detach().float() for _, m in group]
        act_max = stats.abs_max
        if act == "tensor" and group[0][0] in self._all_rows_max:   # padding rows too: fbgemm's one range covers them
            act_max = torch.maximum(act_max, self._all_rows_max[group[0][0]])
        if not self.smooth:
            alphas = [None]
        else:
            alphas = [None, *sorted(set(ALPHA_GRID) | {self.alpha})] if self.search else [self.alpha]
        best = None
        # the scaling at the full range first, then the range for that scaling (a coordinate
        # search: 8 + 6 candidates instead of 8 x 7)
        for a in alphas:
            s = None if a is None else smooth_scale(act_max, weights, a)
            mods = {n: self._candidate(m, s, act, stats) for n, m in group}
            if stats.rows is None:
                return a, mods, None, 1.0
            err = sum(relative_error([q(stats.rows)], [m(stats.rows)]) for (n, m), q in zip(group, mods.values()))
            if best is None or err < best[2]:
                best = (a, mods, err, s)
        a, mods, err, s = best
        clip = 1.0
        if self.search and act == "static":
            k = next(iter(mods.values())).outliers
            clip, err = best_static_range([(q, m) for (n, m), q in zip(group, mods.values())], stats, s, k)
        return a, mods, err, clip

    def process(self, model: nn.Module, group: list[tuple[str, nn.Module]], stats: HessianAccumulator) -> None:
        group = _plain(group)
        if not group:
            return
        tokens = stats.n / max(self.samples, 1)
        if self.execute == "float":
            s = smooth_scale(stats.abs_max, [m.weight.detach().float() for _, m in group], self.alpha)
            for name, mod in group:
                replace(model, name, ScaledLinear.from_linear(mod, s))
                self.report_[name] = {"alpha": self.alpha}
            return
        default = "token_scale" if self.act == "auto" else self.act
        fixed = {n: layer_value(self, n, m, None) for n, m in group}
        act = next((v for v in fixed.values() if v is not None), default)   # a group shares one scale
        a, mods, err, clip = self._best(group, stats, act)
        auto = self.act == "auto" and all(v is None for v in fixed.values())
        if auto:                    # the per-tensor alternative, tried end to end after every group
            ta, alt, terr, _ = self._best(group, stats, "tensor")
            self._order.append([n for n, _ in group])
            self._alt.update(alt)
        self._groups.append(([n for n, _ in group], tokens))
        for name, q in mods.items():
            self.report_[name] = {"act": q.act, "alpha": a, "error": err, **choose_kernel(q, tokens, self.kernel)}
            if q.act == "static":
                self.report_[name]["clip"] = clip
            if auto:
                self.report_[name]["tensor"] = {"act": "tensor", "alpha": ta, "error": terr,
                                                **choose_kernel(self._alt[name], tokens, self.kernel)}
            replace(model, name, q)


@torch.no_grad()
def fuse_groups(model: nn.Module, data, groups: list[tuple[list[str], float]], report: dict, policy: str,
                checks: list) -> None:
    """Each group's int8 layers (names, tokens per sample) -> one Int8FusedLinear group where
    `fusable`, kept where the model's outputs on `checks` stay those of the unfused layers
    (FUSE_TOLERANCE) and each input is computed once; `report[name]` says which."""
    was = model.training
    model.eval()
    try:
        refs = main_outputs(model, data, checks)
        old, leads = {}, []
        for names, tokens in groups:
            mods = [model.get_submodule(n) for n in names]
            if not fusable(mods):
                continue
            members, info = fuse_group(mods, names[0], tokens, policy)
            for n, m, new in zip(names, mods, members):
                old[n] = m
                replace(model, n, new)
                report[n].update(fused=names[0], **info)
            leads.append((names, members[0]))
        if not leads:
            return
        try:
            e = relative_error(main_outputs(model, data, checks), refs)
        except Exception as err:  # noqa: BLE001 - a model that cannot take the members' views: unfused
            e = f"{type(err).__name__}: {err}"
        for names, lead in leads:       # fused, but each member called with another input: no gain
            once = lead.calls == lead.computes * len(names)
            if not isinstance(e, float) or e > FUSE_TOLERANCE or not once:
                for n in names:
                    replace(model, n, old[n])
                    why = e if once else "its members read different input tensors"
                    report[n].update(fused=None, fuse_refused=why, kernel=old[n].kernel)
            else:
                for n in names:
                    report[n]["fuse_error"] = e
    finally:
        model.train(was)


@torch.no_grad()
def fold_input_scales(model: nn.Module, data, groups: list[tuple[list[str], float]], report: dict,
                      checks: list, fp32: list) -> None:
    """Each group's input scale 1/s (its int8 layers' `input_scale`) moved into the output
    channels of the int8 layer that produces that input (the nearest earlier layer of that
    width: the value projection before attention's output projection), where the consumer's
    input is measured channel-wise linear in the producer's output (a random positive scale
    of its channels scales the input by the same) and the model's outputs on `checks` move
    by less than FOLD_TOLERANCE x the int8 model's error against `fp32` (its outputs before
    the step): one pass over the input fewer per call. `report` gets each decision."""
    was = model.training
    model.eval()
    try:
        order = [n for names, _ in groups for n in names]
        mods = {n: model.get_submodule(n) for n in order}
        refs = main_outputs(model, data, checks)          # the int8 model before any fold
        e_int8 = relative_error(refs, fp32)
        g = torch.Generator().manual_seed(0)
        for names, _ in groups:
            cons = [mods[n] for n in names]
            if not all(type(m) is Int8DynamicLinear and m.smooth for m in cons):
                continue
            prev = [n for n in order[:order.index(names[0])]
                    if type(mods[n]) is Int8DynamicLinear and mods[n].out_features == cons[0].in_features]
            if not prev:
                continue
            src = prev[-1]                  # the nearest earlier layer of that width
            c = torch.rand(cons[0].in_features, generator=g) + 0.5
            x0 = _input_rows(model, data, checks[0], cons[0])
            saved = {k: v.clone() for k, v in mods[src].state_dict().items()}
            mods[src].scale_outputs(c)
            x1 = _input_rows(model, data, checks[0], cons[0])
            mods[src].load_state_dict(saved)          # exactly as it was
            if x0 is None or x1 is None:
                continue
            lin = float((x1 - x0 * c).abs().max()) <= 1e-4 * float((x0 * c).abs().max())
            report[names[0]]["fold_linear_in"] = [src, lin]
            if not lin:
                continue
            t = cons[0].input_scale.clone()
            mods[src].scale_outputs(t)
            plain = {n: m.without_input_scale() for n, m in zip(names, cons)}
            for n, m in plain.items():
                replace(model, n, m)
            e = relative_error(main_outputs(model, data, checks), refs)
            if e <= FOLD_TOLERANCE * e_int8:
                mods.update(plain)
                for n in names:
                    report[n].update(folded_into=src, fold_error=e)
            else:
                mods[src].load_state_dict(saved)
                for n, m in zip(names, cons):
                    replace(model, n, m)
                report[names[0]]["fold_refused"] = e
    finally:
        model.train(was)


@torch.no_grad()
def best_static_range(pairs: list[tuple[Int8DynamicLinear, nn.Module]], stats: HessianAccumulator,
                      s: torch.Tensor | None, k: int) -> tuple[float, float]:
    """(clip, error): the act "static" modules of `pairs` (int8 module, the layer it replaces),
    all reading one input, set to the range CLIP_GRID[i] x the calibrated min-max
    (`static_range`) with the least summed relative output error on the sampled rows."""
    refs = [ref(stats.rows) for _, ref in pairs]
    errs = []
    for clip in CLIP_GRID:
        rng = static_range(stats.lo, stats.hi, s, k, clip)
        for q, _ in pairs:
            q.set_static(*rng)
        errs.append(sum(relative_error([q(stats.rows)], [y]) for (q, _), y in zip(pairs, refs)))
    i = min(range(len(errs)), key=errs.__getitem__)
    for q, _ in pairs:
        q.set_static(*static_range(stats.lo, stats.hi, s, k, CLIP_GRID[i]))
    return CLIP_GRID[i], errs[i]


def static_range(lo: torch.Tensor, hi: torch.Tensor, s: torch.Tensor | None, k: int, clip: float = 1.0):
    """(lo, hi, outlier channels) of act "static" from the calibration inputs' per-channel
    min / max (before the smoothing division by s): the k channels of largest |x| / s are
    kept exact, the range spans the others (and 0), times `clip` (<= 1: values past it are
    clipped, the rest sit on a finer grid)."""
    lo, hi = (lo, hi) if s is None else (lo / s, hi / s)
    order = torch.maximum(-lo, hi).argsort(descending=True)
    rest = order[k:]
    if rest.numel() == 0:
        return 0.0, 0.0, order[:k].sort().values
    return clip * float(lo[rest].min()), clip * float(hi[rest].max()), order[:k].sort().values


@torch.no_grad()
def _input_max_all_rows(model: nn.Module, modules: dict[str, nn.Module], data, calib: Calibration) -> dict:
    """name -> (in,) max |x_j| of each target's input over every row of the calibration
    batches, padding rows included (the statistics of `collect` read real tokens only)."""
    out: dict[str, torch.Tensor] = {}

    def hook(m, args, kwargs, name):
        x = (args[0] if args else next(iter(kwargs.values()))).detach()
        x = x.reshape(-1, x.shape[-1]).float().abs().amax(0)
        out[name] = x if name not in out else torch.maximum(out[name], x)

    handles = [m.register_forward_pre_hook(lambda m, a, k, n=n: hook(m, a, k, n), with_kwargs=True)
               for n, m in modules.items()]
    was = model.training
    model.eval()
    try:
        for b in calib.batches(data):
            data.call(model, b)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return out


def _input_rows(model: nn.Module, data, batch, module: nn.Module) -> torch.Tensor | None:
    """(rows, in) the input `module` reads on this batch (its first call), or None."""
    got = []

    def hook(m, args, kwargs):
        if not got:
            x = args[0] if args else next(iter(kwargs.values()))
            got.append(x.detach().reshape(-1, x.shape[-1]).float().clone())

    h = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        data.call(model, batch)
    finally:
        h.remove()
    return got[0] if got else None


def main_outputs(model: nn.Module, data, batches: list) -> list[torch.Tensor]:
    """The model's output tensor on each batch, in eval mode (the mode it had is restored);
    where the batch has an attention_mask (N, T) and the output is (N, T, d), only the real
    tokens' rows (padding is not read)."""
    outs = []
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for b in batches:
                y = output_tensor(data.call(model, b)).detach().float()
                m = token_mask(b, y)
                if m is not None:
                    y = y[m]
                outs.append(y.clone())
    finally:
        model.train(was)
    return outs


def relative_error(outs: list[torch.Tensor], refs: list[torch.Tensor]) -> float:
    """Relative squared error sum ||o - r||^2 / sum ||r||^2."""
    num = sum(float(((o - r) ** 2).sum()) for o, r in zip(outs, refs))
    return num / max(sum(float((r ** 2).sum()) for r in refs), 1e-30)
