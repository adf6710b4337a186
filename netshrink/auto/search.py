"""`ns.auto`: compress a model to a budget (bytes and / or latency, at most `max_drop`
points of accuracy lost), choosing per layer.

    >>> res = ns.auto(model, train, budget=ns.Budget(bytes="12KB", max_drop=0.5), eval_data=test)
    >>> res.write("runs/x"); res.check()      # check(): one clear error if the budget was not met

Pipeline (storage): sensitivity tables (sensitivity.probe: per layer x sparsity x
bits, codec bytes and loss probes, cached) -> multiple-choice knapsack over the file's
bytes (allocate.knapsack) -> stage 1: `gradual_magnitude` with the per-layer
sparsities, fine-tuned -> stage 2: the bits re-allocated by the same knapsack on the
*pruned* weights with their exact codec bytes -> `kmeans` with the per-layer bits,
centroids fine-tuned -> verification: the saved file's bytes, accuracy on held-out
`eval_data`. The two stages are the two steps of one recipe (`recipe`), which
`netshrink compress` replays to the same weights.

Latency (widths.py): per-group channel widths chosen by the same knapsack, on the
latency measured at the budget's batch size with each group pruned alone (l1) and the
loss probe of each; one `channel_prune` step per group, fine-tuned, before the storage
stage; the shrunk model's latency is measured before fine-tuning (the knapsack re-run
with less room if it is over) and the final model's again. Every latency is
timed interleaved with the uncompressed model and expressed at the machine speed of the
moment that model was first timed (`cost.relative_latency`): a shared machine drifts.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import Dataset, IterableDataset

from netshrink.auto import allocate
from netshrink.auto import oneshot
from netshrink.auto.budget import Budget
from netshrink.auto.oneshot import EMBEDDING_BITS, GPTQ_BITS, ONESHOT
from netshrink.auto.cost import (Choice, candidate, file_bytes, measured_latency, relative_latency, share_like,
                                 tensor_bytes)
from netshrink.auto.outputs import write_outputs
from netshrink.auto.widths import FRACTIONS, structured_to_latency
from netshrink.auto.sensitivity import (BITS, SPARSITIES, LayerTable, calibration, choices_for,
                                        default_targets, mean_loss, probe, set_weight,
                                        site_choices)
from netshrink.core.batches import Batches, as_batches
from netshrink.core.targets import Targets, select
from netshrink.errors import NetshrinkError
from netshrink.measure.metrics import LOWER_IS_BETTER, MetricValue, choose, compute
from netshrink.pipeline.compress import compress_
from netshrink.pipeline.recipe import Recipe, Step
from netshrink.pipeline.registry import create
from netshrink.train.config import TrainConfig
from netshrink.train.loop import predict_positions

METHODS = ("prune", "kmeans", "channels") + ONESHOT
FINETUNE = TrainConfig(epochs=10, lr=1e-3)
CENTROIDS = {"epochs": 3, "lr": 1e-4}
# The bisection aims below the latency budget by this factor: timings on a shared machine
# scatter by ~+-15 % (measured: 8.9 vs 12.4 ms for near-equal amounts) and fine-tuning is after.
LATENCY_AIM = 0.85
# Bytes kept free (at least; or 0.4 % of the budget) for what fine-tuning the centroids and
# biases changes in the file (measured: ~20 B on a 8 kB file).
SLACK = 32


@dataclass
class Point:
    """One compressed model the search built and measured."""

    label: str
    target_bytes: int | None
    bytes: int
    acc: float
    drop_pp: float
    latency_ms: float | None
    seconds: float
    recipe: Recipe
    choices: dict = field(default_factory=dict)        # layer -> Choice
    layer_bytes: dict = field(default_factory=dict)    # layer -> codec bytes of the final weight
    met: bool = False
    widths: dict = field(default_factory=dict)         # group (producer module) -> fraction of units removed

    def row(self) -> dict:
        return {"label": self.label, "target_bytes": self.target_bytes, "bytes": self.bytes, "acc": self.acc,
                "drop_pp": self.drop_pp, "latency_ms": self.latency_ms, "seconds": self.seconds, "met": self.met,
                "choices": {k: [c.sparsity, c.bits] + ([c.method] if c.method else []) for k, c in self.choices.items()},
                "widths": self.widths}


@dataclass
class AutoResult:
    budget: Budget
    baseline_acc: float
    dense_bytes: int                 # parameter count x 4
    baseline_latency_ms: float | None
    points: list[Point]
    best: Point | None
    model: nn.Module | None          # the model of `best`
    tables: list[LayerTable]
    seconds: float
    message: str = ""
    metric: str = "accuracy"         # what acc / drop_pp are measured in (Quality)
    unit: str = "pp"                 # of the drop: points for accuracy, the metric's units otherwise
    point_models: dict = field(default_factory=dict)   # label -> model of every point (the one-shot search)

    @property
    def met(self) -> bool:
        return self.best is not None and self.best.met

    @property
    def recipe(self) -> Recipe | None:
        return self.best.recipe if self.best else None

    def check(self) -> "AutoResult":
        """Raise one NetshrinkError naming the nearest points when the budget was not met."""
        if not self.met:
            raise NetshrinkError(self.message)
        return self

    def write(self, out, *, command: str = "", reproduce: str = "") -> None:
        write_outputs(self, out, command=command, reproduce=reproduce)


def auto(model: nn.Module, data, budget: Budget, *, eval_data=None, methods=("prune", "kmeans"),
         finetune: TrainConfig | None = None, centroid_finetune: dict | None = None, proxy: str = "loss",
         sparsities=SPARSITIES, bits=BITS, targets: Targets | None = None, calib_size: int = 1024,
         compare_uniform: bool = False, explore: int = 1, distill: bool = False, progress: bool = True,
         cache: bool = True, loss=None, metric="auto", widths=FRACTIONS, gptq_bits=GPTQ_BITS,
         embedding_bits=EMBEDDING_BITS, samples: int = 128, calib_batch: int = 16, log=None) -> AutoResult:
    """Search per-layer choices under `budget`, compress a copy of `model` (fine-tuned on
    `data`), verify on `eval_data` (default: 10 % of `data`, held out of fine-tuning).
    data / eval_data: anything core.batches reads (a Dataset, a DataLoader, a list of
    batches of tensors, tuples or dicts, a Batches with the user's forward / target rules).
    loss: the fine-tuning loss (a name of train/losses.py or a callable
    `loss(outputs, target)`; default `finetune.loss`, "auto"); the sensitivity probes
    measure the same loss. metric: what the drop is measured in (measure/metrics.py;
    "auto": accuracy in points for class targets, MSE for float targets, agreement with
    the model as given for unlabelled data). distill: fine-tune with Hinton's soft targets
    of the model as given (a `distill` step first in the recipe, with no phase of its
    own). widths: the fractions of a group's units a latency budget may remove
    (widths.FRACTIONS). The model passed in is not changed.

    methods "gptq" / "embedding_bits" (alone or together, never with the others): the
    one-shot search (oneshot.py), no fine-tuning: per Linear the GPTQ bits of
    `gptq_bits` (per channel), per embedding table the mean row width of
    `embedding_bits`; `samples` / `calib_batch` are the methods' calibration pass;
    `calib_size` samples of `data` are the probe batches of each candidate."""
    t0 = time.perf_counter()
    log = log or (lambda msg: None)
    if any(m in ONESHOT for m in methods):
        others = [m for m in methods if m not in ONESHOT]
        if others:
            raise NetshrinkError(f"auto: the one-shot methods ({', '.join(ONESHOT)}) are searched without "
                                 f"fine-tuning, alone; not with {', '.join(others)}")
        if budget.bytes is None or budget.latency_ms is not None:
            raise NetshrinkError("auto: the one-shot search (gptq, embedding_bits) takes a size budget only "
                                 "(bytes=..., --size), not a latency")
    methods = tuple(methods) + (("channels",) if budget.latency_ms is not None and "channels" not in methods else ())
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise NetshrinkError(f"auto: unknown method(s) {bad}; valid: {', '.join(METHODS)}")
    if proxy not in ("loss", "fisher"):
        raise NetshrinkError(f"auto: proxy {proxy!r} must be loss or fisher")
    if eval_data is None:
        data, eval_data = _split(data)
    cfg = finetune or FINETUNE
    cent = dict(centroid_finetune or CENTROIDS)
    base = copy.deepcopy(model).eval()
    quality = Quality(eval_data, base, metric)
    base_acc = quality.baseline
    dense = 4 * sum(p.numel() for p in base.parameters())
    calib = calibration(data, base, calib_size, loss=loss if loss is not None else cfg.loss)
    example = calib.example(budget.batch) if budget.latency_ms is not None else None   # latency only
    base_lat = measured_latency(base, example) if budget.latency_ms is not None else None
    if any(m in ONESHOT for m in methods):
        return _oneshot(t0, base, data, budget, quality, calib, dense, tuple(methods), targets=targets,
                        gptq_bits=gptq_bits, embedding_bits=embedding_bits, samples=samples,
                        calib_batch=calib_batch, compare_uniform=compare_uniform, explore=explore,
                        progress=progress, cache=cache, log=log)

    models: dict[int, nn.Module] = {}
    teacher = None
    if distill:
        teacher = copy.deepcopy(base).eval()
        teacher.requires_grad_(False)

    def runner(b: Budget) -> _Runner:
        start, pre, chosen = base, [], {}
        if b.latency_ms is not None and base_lat > b.latency_ms:
            start, pre, chosen = structured_to_latency(base, data, calib, example, base_lat, b.latency_ms,
                                                       LATENCY_AIM, cfg, loss, widths, log)
        tables = []
        tg = targets or default_targets(start)
        if b.bytes is not None and ("prune" in methods or "kmeans" in methods):
            sp = sparsities if "prune" in methods else (0.0,)
            bt = bits if "kmeans" in methods else (None,)
            _feasible(start, b.bytes, sp, bt, tg)
            tables = probe(start, calib, choices_for(sp, bt), targets=tg, cache=cache, progress=progress)
        return _Runner(start, pre, data, quality, calib, b, cfg, cent, proxy, tables, tg, base_acc,
                       example, "kmeans" in methods, progress, log, models, teacher, base, base_lat, loss,
                       chosen)

    run = runner(budget)
    points = [run.point("auto", budget.bytes)]
    if compare_uniform and run.tables:
        points.append(run.point("uniform", budget.bytes, uniform=True))
    for k in range(explore if not points[0].met else 0):   # the nearest points: looser budgets
        scale = 1.5 ** (k + 1)
        loose = dataclasses.replace(budget, bytes=int(budget.bytes * scale) if budget.bytes else None,
                                    latency_ms=budget.latency_ms * scale if budget.latency_ms else None)
        r = run if loose.latency_ms is None else runner(loose)
        r.budget = loose
        p = r.point(f"auto x{scale:g}", loose.bytes)
        p.met = False                      # it does not meet the user's budget, only shows what would
        points.append(p)
    best = points[0]
    res = AutoResult(budget, base_acc, dense, base_lat, points, best, models[id(best)], run.tables,
                     time.perf_counter() - t0, metric=quality.name, unit=quality.unit)
    res.message = _message(res)
    return res


def _oneshot(t0, base, data, budget, quality, calib, dense, methods, *, targets, gptq_bits, embedding_bits,
             samples, calib_batch, compare_uniform, explore, progress, cache, log) -> AutoResult:
    """The one-shot search: probes -> knapsack -> compress_ (no fine-tuning) -> verify;
    the knapsack re-run with less room while the saved file is over (up to 3 times)."""
    plan = oneshot.plan(base, data, methods, gptq_bits=gptq_bits, embedding_bits=embedding_bits,
                        samples=samples, calib_batch=calib_batch, targets=targets)
    fixed, floor = oneshot.floor_bytes(base, plan)
    if floor > budget.bytes:
        raise NetshrinkError(f"size budget {budget.bytes:,} bytes cannot be met: the smallest file these choices "
                             f"reach is about {floor:,} bytes ({fixed:,} of them outside the searched weights; "
                             f"every Linear at gptq {min(plan.gptq_bits)} bits, every table at "
                             f"{min(plan.embedding_bits):g} bits per row); allow a larger --size or fewer bits")
    log(f"one-shot search: {len(plan.linears)} Linear(s) x gptq bits {list(plan.gptq_bits)}, "
        f"{len(plan.tables)} table(s) x embedding_bits {list(plan.embedding_bits)}")
    tables = oneshot.probe(base, data, calib, plan, cache=cache, progress=progress)
    rho = oneshot.proxy_agreement(tables)
    if rho is not None:
        log(f"Hessian proxy (each layer's output error) vs loss probes: rank correlation {rho:.3f}")
    costs, damage = [t.bytes for t in tables], [t.loss for t in tables]
    cheapest = [min(range(len(c)), key=c.__getitem__) for c in costs]
    models: dict[int, nn.Module] = {}

    def point(label: str, target: int, uniform: bool = False) -> Point:
        t1 = time.perf_counter()
        slack = max(SLACK, int(0.004 * target))
        cap = target - fixed - slack
        options = oneshot.uniform_options(tables) if uniform else None
        for _ in range(3):
            picks = (allocate.knapsack(costs, damage, cap) if options is None
                     else allocate.uniform(costs, damage, cap, options)) or cheapest
            choices = {t.name: t.choices[i] for t, i in zip(tables, picks)}
            recipe = oneshot.recipe(plan, choices)
            net = copy.deepcopy(base)
            compress_(net, recipe, data=data, progress=progress)
            size = file_bytes(net)
            log(f"{label}: {size:,} B saved (knapsack room {cap:,} B for the searched weights, predicted "
                f"{allocate.total(costs, picks) + fixed:,.0f} B, loss +{allocate.total(damage, picks):.5f})")
            if size <= target or picks == cheapest:
                break
            cap -= size - target + slack
        value = quality(net)
        drop = quality.drop(value)
        met = size <= budget.bytes and drop <= budget.max_drop + 1e-9
        mods = {**plan.linears, **plan.tables}
        final = dict(net.named_modules())
        layer_bytes = {t.name: tensor_bytes(final[n].weight.detach()) for t, n in zip(tables, mods)}
        p = Point(label, target, size, value, drop, None, time.perf_counter() - t1, recipe, choices, layer_bytes,
                  met)
        log(f"{label}: {size:,} B, {quality.name} {value:.4f} (drop {drop:.4f} {quality.unit}), {p.seconds:.0f} s")
        models[id(p)] = net
        return p

    points = [point("auto", budget.bytes)]
    if compare_uniform:
        points.append(point("uniform", budget.bytes, uniform=True))
    for k in range(explore if not points[0].met else 0):   # the nearest points: looser budgets
        scale = 1.5 ** (k + 1)
        q = point(f"auto x{scale:g}", int(budget.bytes * scale))
        q.met = False                      # it does not meet the user's budget, only shows what would
        points.append(q)
    best = points[0]
    res = AutoResult(budget, quality.baseline, dense, None, points, best, models[id(best)], tables,
                     time.perf_counter() - t0, metric=quality.name, unit=quality.unit,
                     point_models={q.label: models[id(q)] for q in points})
    res.message = _message(res)
    return res


def _split(data, frac: float = 0.1, seed: int = 0):
    """(fine-tuning part, held-out part) of a map-style Dataset (or a Batches over one,
    its rules kept on both parts)."""
    b = as_batches(data)
    inner = b.data
    if not (isinstance(inner, Dataset) and not isinstance(inner, IterableDataset) and hasattr(inner, "__len__")):
        raise NetshrinkError("auto: without eval_data the search holds out 10 % of data, which needs a "
                             f"map-style Dataset (got {type(inner).__name__}): pass eval_data=...")
    if len(inner) < 2:
        raise NetshrinkError(f"auto: data holds {len(inner)} sample(s), too few to hold any out: pass eval_data=...")
    g = torch.Generator().manual_seed(seed)
    n_eval = max(1, int(len(inner) * frac))
    rest, held = torch.utils.data.random_split(inner, [len(inner) - n_eval, n_eval], generator=g)
    if b is data:
        return rest, held
    rules = dict(forward=b.forward, target=b.target, n_inputs=b.n_inputs, collate=b.collate)
    return Batches(rest, **rules), Batches(held, **rules)


class Quality:
    """The metric the drop is measured in, on `eval_data`, against `reference` (the model
    as given): accuracy (a drop in points) for class targets, else measure/metrics.py's
    choice (MSE for float targets; agreement with the reference for unlabelled data) or
    the user's `metric`. drop(value) is how much worse than the reference, in the budget's
    units: points for a fraction (accuracy, agreement), the metric's own units otherwise."""

    def __init__(self, eval_data, reference: nn.Module, metric="auto"):
        self.data, self.metric = eval_data, metric
        self.ref_out, y, self.mask = predict_positions(reference, eval_data)
        self.name = choose(metric, self.ref_out, y, has_reference=True)
        probe_value = MetricValue(self.name, 0.0, self.name not in LOWER_IS_BETTER)
        self.higher, self.points = probe_value.higher_is_better, probe_value.is_fraction
        self.baseline = self(reference)

    def __call__(self, model: nn.Module) -> float:
        out, y, _ = predict_positions(model, self.data)
        return compute(self.name, self.metric, out, y, self.ref_out, self.mask)

    def drop(self, value: float) -> float:
        d = (self.baseline - value) if self.higher else (value - self.baseline)
        return 100 * d if self.points else d

    @property
    def unit(self) -> str:
        return "pp" if self.points else f"({self.name})"


def _feasible(model, budget_bytes: int, sparsities, bits, targets) -> None:
    """Fail before any training when even the smallest choice per layer cannot fit."""
    sites = select(model, targets)
    weights = {s.name: s.tensor.detach() for s in sites}
    fixed = file_bytes(model) - sum(tensor_bytes(w) for w in weights.values())
    smallest = Choice(max(sparsities), min(b for b in bits) if None not in bits else None)
    floor = fixed + sum(min(tensor_bytes(candidate(w, c, iters=5)) for c in site_choices(w, [smallest]))
                        for w in weights.values())
    if floor > budget_bytes:
        raise NetshrinkError(f"size budget {budget_bytes:,} bytes cannot be met: the smallest file these choices "
                             f"reach is about {floor:,} bytes ({fixed:,} of them outside the searched weights; "
                             f"every layer {smallest.label}); allow a larger --size or higher sparsities")


class _Runner:
    """Builds one point: allocation -> stage 1 (prune) -> stage 2 (bits) -> verify."""

    def __init__(self, start, pre_steps, data, quality, calib, budget, cfg, cent, proxy, tables, targets,
                 base_acc, example, kmeans, progress, log, models, teacher, reference, reference_ms, loss,
                 widths):
        self.__dict__.update(locals())
        del self.__dict__["self"]

    def point(self, label: str, target: int | None, uniform: bool = False) -> Point:
        t0 = time.perf_counter()
        net = copy.deepcopy(self.start)
        steps = list(self.pre_steps)
        # Distillation: the loss of a persistent first step, no phase of its own (epochs 0), the
        # teacher the model as given, in each stage as in one `compress_` of the whole recipe.
        kd = [Step(create("distill"), {"epochs": 0})] if self.teacher is not None else []
        steps += kd
        choices: dict[str, Choice] = {}
        if self.budget.bytes is not None and self.tables:
            sites = select(net, self.targets)
            ws = [s.tensor.detach().clone() for s in sites]
            options = _uniform_options([t.choices for t in self.tables]) if uniform else None
            picks = self._fit(net, [t.bytes for t in self.tables], [t.damage(self.proxy) for t in self.tables],
                              options, lambda li, i: candidate(ws[li], self.tables[li].choices[i], iters=20))
            smap = {t.name: t.choices[i].sparsity for t, i, w in zip(self.tables, picks, ws) if w.dim() > 1}
            self.log(f"{label}: stage 1 sparsities {smap}")
            if any(v > 0 for v in smap.values()):
                step1 = Step(create("gradual_magnitude", runtime="dense", sparsity=max(smap.values()),
                                    per_layer=smap, frequency=20, targets=Targets(include=list(smap))))
                compress_(net, Recipe(kd + [step1], self.cfg), data=self.data, teacher=self.teacher,
                          progress=self.progress, loss=self.loss)
                steps.append(step1)
                self.log(f"{label}: after stage 1 {file_bytes(net):,} B, drop {self.quality.drop(self.quality(net)):.2f} "
                         f"{self.quality.unit} (a diagnostic: nothing is chosen on it)")
            bmap = self._bits(net, uniform) if self.kmeans else {}
            if bmap:
                step2 = Step(create("kmeans", bits=max(bmap.values()), per_layer=bmap,
                                    targets=Targets(include=list(bmap))), dict(self.cent))
                compress_(net, Recipe(kd + [step2], self.cfg), data=self.data, teacher=self.teacher,
                          progress=self.progress, loss=self.loss)
                steps.append(step2)
            choices = {t.name: Choice(smap.get(t.name, 0.0), bmap.get(t.name)) for t in self.tables}
        size = file_bytes(net)
        acc = self.quality(net)
        lat = (relative_latency(net, self.reference, self.example, reference_ms=self.reference_ms)
               if self.budget.latency_ms is not None else None)
        drop = self.quality.drop(acc)
        met = ((self.budget.bytes is None or size <= self.budget.bytes)
               and (lat is None or lat <= self.budget.latency_ms) and drop <= self.budget.max_drop + 1e-9)
        layer_bytes = {s.name: tensor_bytes(s.tensor.detach()) for s in select(net, self.targets)} if choices else {}
        p = Point(label, target, size, acc, drop, lat, time.perf_counter() - t0, Recipe(steps, self.cfg),
                  choices, layer_bytes, met, dict(self.widths))
        self.log(f"{label}: {size:,} B, {self.quality.name} {acc:.4f} (drop {drop:.2f} {self.quality.unit})"
                 + (f", {lat:.3f} ms" if lat is not None else "") + f", {p.seconds:.0f} s")
        self.models[id(p)] = net
        return p

    def _fit(self, net, costs, damage, options, make) -> list[int]:
        """Knapsack picks whose *whole file* fits: the fixed bytes (header; its descriptors
        depend on the encodings chosen) are re-measured by saving a copy with the picked
        candidates, and the capacity shrinks by any excess, up to 4 times. options: the
        uniform allocations to choose among instead of the knapsack. If nothing fits,
        the cheapest option of every layer (built, measured, reported)."""
        sites = select(net, self.targets)
        cheapest = [min(range(len(c)), key=c.__getitem__) for c in costs]
        fixed = file_bytes(net) - sum(tensor_bytes(s.tensor.detach()) for s in sites)
        slack = max(SLACK, int(0.004 * self.budget.bytes))
        cap = self.budget.bytes - fixed - slack
        picks = cheapest
        for _ in range(4):
            picks = allocate.knapsack(costs, damage, cap) if options is None else \
                allocate.uniform(costs, damage, cap, options)
            if picks is None:
                return cheapest
            trial = copy.deepcopy(net)
            for li, (s, i) in enumerate(zip(select(trial, self.targets), picks)):
                set_weight(s, make(li, i))
            over = file_bytes(trial) - (self.budget.bytes - slack)
            if over <= 0:
                return picks
            cap -= over
        return picks

    @torch.no_grad()
    def _bits(self, net, uniform: bool) -> dict[str, int]:
        """Bits per tensor (or none: float32) by the knapsack on the pruned weights'
        exact codec bytes and loss probes."""
        sites = select(net, self.targets)
        net.eval()
        base = mean_loss(net, self.calib)
        costs, damage, opts = [], [], []
        for s, t in zip(sites, self.tables):
            w = s.tensor.detach().clone()
            o = sorted({c.bits for c in t.choices}, key=lambda b: 99 if b is None else b)
            c, d = [], []
            for b in o:
                q = share_like(w, b)          # the kmeans method's own clustering (linear init, 100 iters)
                c.append(tensor_bytes(q))
                set_weight(s, q)
                d.append(mean_loss(net, self.calib) - base)
            set_weight(s, w)
            costs.append(c)
            damage.append(d)
            opts.append([Choice(0.0, b) for b in o])
        ws = [s.tensor.detach().clone() for s in sites]
        picks = self._fit(net, costs, damage, _uniform_options(opts) if uniform else None,
                          lambda li, i: share_like(ws[li], opts[li][i].bits))
        for s, o, c, d, i in zip(sites, opts, costs, damage, picks):
            self.log(f"stage 2 {s.name}: " + ", ".join(f"{'*' if j == i else ''}{x.bits or 'fp32'}: {b} B / {v:+.4f}"
                                                      for j, (x, b, v) in enumerate(zip(o, c, d))))
        return {s.name: o[i].bits for s, o, i in zip(sites, opts, picks) if o[i].bits is not None}


def _uniform_options(choices: list[list[Choice]]) -> list[list[int]]:
    """Uniform allocations: one (sparsity, bits) of the weights' grid for every matrix;
    vectors (biases) take the same bits, unpruned."""
    grid = next((c for c in choices if any(x.sparsity > 0 for x in c)), choices[0])
    out = []
    for g in grid:
        row = []
        for cs in choices:
            want = g if any(x.sparsity > 0 for x in cs) or cs is grid else Choice(0.0, g.bits)
            row.append(cs.index(want) if want in cs else min(range(len(cs)), key=lambda i: cs[i].bits or 99))
        out.append(row)
    return out


def _message(res: AutoResult) -> str:
    b = res.budget
    fmt = "{:.2f}" if res.unit == "pp" else "{:.4f}"
    if res.met:
        p = res.best
        return (f"met {b.describe(res.unit)}: {p.bytes:,} bytes ({res.dense_bytes / p.bytes:.1f}x), "
                f"drop {fmt.format(p.drop_pp)} {res.unit}"
                + (f", {p.latency_ms:.3f} ms" if p.latency_ms is not None else ""))
    near = "; ".join(f"{p.label}: {p.bytes:,} B, drop {fmt.format(p.drop_pp)} {res.unit}"
                     + (f", {p.latency_ms:.3f} ms" if p.latency_ms is not None else "") for p in res.points)
    return f"budget {b.describe(res.unit)} not met; nearest points found: {near}"
