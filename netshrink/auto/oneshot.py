"""One-shot search: GPTQ bits per Linear and `embedding_bits` mean widths per embedding table, under a byte budget, without fine-tuning.

    >>> res = ns.auto(model, calib, ns.Budget(bytes="11.4MB", max_drop=0.01), eval_data=held_out,
    ...               methods=["gptq", "embedding_bits"], metric="fidelity_cosine")

The candidates of one layer are what the recipe's methods would leave there if that
layer alone were compressed, the rest of the model as given:
- a Linear (or ScaledLinear): `gptq` per output channel at each of `gptq_bits`, on the
  Hessian of its input in the model as given (layerwise.discover / collect over the
  method's own calibration samples, `samples` in batches of `calib_batch`);
- an embedding table: `embedding_bits` at each mean row width of `embedding_bits`, from
  the token counts of the method's own calibration pass (`EmbeddingBits.quantized`: reverse
  water-filling; `quantize_rows`: each row on its own grid), as `EmbeddingBits.prepare`.
Per candidate (`probe`, a progress bar, cached like sensitivity.probe):
- `bytes`: what the codec stores for it (cost.tensor_bytes, what `save` writes);
- `loss`: the increase of the run's loss over the probe batches with that one layer
  replaced (distillation toward the model as given for unlabelled data), the damage
  the knapsack adds up;
- `fisher`: here the Hessian proxy, the layer's own output error per token,
  1/2 tr(dW H dWᵀ) with H = 2/n XᵀX (diag(2 c / n) for a table's one-hot input),
  which GPTQ minimises; `proxy_agreement` says how well its ranking matches the probes'.

The allocation (search.py) is the multiple-choice knapsack of the other searches; the
recipe (`recipe`) is one `gptq` step whose `per_layer` map holds every layer's bits and
one `embedding_bits` step per table. compress_ replays it with GPTQ's sequential
calibration (each layer on the model quantized so far), so the final weights differ a
little from the candidates: the saved file's bytes and the fidelity are measured again.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import torch
from torch import nn

from netshrink.auto.cost import Choice, file_bytes, tensor_bytes
from netshrink.auto.sensitivity import (Calib, LayerTable, cache_key, mean_loss, read_tables, set_weight,
                                        write_tables)
from netshrink.core.batches import as_batches
from netshrink.core.context import PrepareContext
from netshrink.core.targets import Site, Targets, select
from netshrink.errors import NetshrinkError
from netshrink.functional.gptq import gptq_quantize, rtn_quantize
from netshrink.functional.row_bits import quantize_rows
from netshrink.methods.calibrated.base import LINEAR_TYPES, hessian_for
from netshrink.methods.calibrated.layerwise import Calibration, collect, discover
from netshrink.pipeline.recipe import Recipe, Step
from netshrink.pipeline.registry import create
from netshrink.train.config import TrainConfig
from netshrink.train.progress import progress_bar
from netshrink.zoo.baseline import cache_dir

ONESHOT = ("gptq", "embedding_bits")
GPTQ_BITS = (3, 4, 5, 6, 8)
EMBEDDING_BITS = (2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 8.0)
VERSION = 1


@dataclass
class Plan:
    """What the one-shot search may choose, and the method settings its recipe repeats."""

    gptq: dict                                   # fields of the gptq step (per channel; samples, calib_batch)
    embedding: dict                              # fields of each embedding_bits step (min / max bits, samples)
    linears: dict[str, nn.Module] = field(default_factory=dict)    # module name -> Linear, in call order
    tables: dict[str, nn.Embedding] = field(default_factory=dict)  # module name -> nn.Embedding
    gptq_bits: tuple = GPTQ_BITS
    embedding_bits: tuple = EMBEDDING_BITS

    def describe(self) -> dict:
        return {"gptq": self.gptq, "embedding": self.embedding, "linears": list(self.linears),
                "tables": list(self.tables), "gptq_bits": list(self.gptq_bits),
                "embedding_bits": list(self.embedding_bits)}


def plan(model: nn.Module, data, methods, *, gptq_bits=GPTQ_BITS, embedding_bits=EMBEDDING_BITS,
         samples: int = 128, calib_batch: int = 16, targets: Targets | None = None) -> Plan:
    """The searched layers of `model`: every Linear the data's forward calls (for "gptq")
    and every nn.Embedding (for "embedding_bits"), or those of `targets`."""
    b = as_batches(data)
    gbits = tuple(sorted({int(x) for x in gptq_bits}))
    ebits = tuple(sorted({float(x) for x in embedding_bits}))
    if "gptq" in methods and (not gbits or not all(2 <= x <= 8 for x in gbits)):
        raise NetshrinkError(f"auto: gptq bits {list(gptq_bits)} must be integers in 2..8")
    if "embedding_bits" in methods and (not ebits or not all(2 <= x <= 8 for x in ebits)):
        raise NetshrinkError(f"auto: embedding_bits widths {list(embedding_bits)} must lie in [2, 8]")
    p = Plan(gptq={"granularity": "channel", "samples": samples, "calib_batch": calib_batch},
             # token counts are one cheap pass: embedding_bits' own default number of samples
             embedding={"min_bits": 2, "max_bits": 8, "samples": create("embedding_bits").samples,
                        "calib_batch": calib_batch},
             gptq_bits=gbits, embedding_bits=ebits)
    sites = select(model, targets) if targets is not None and (targets.include or targets.exclude) else None
    if "gptq" in methods:
        linears = ({s.module_name: s.module for s in sites
                    if isinstance(s.module, LINEAR_TYPES) and s.param_name == "weight"} if sites is not None else
                   {n: m for n, m in model.named_modules() if isinstance(m, LINEAR_TYPES)})
        if linears:
            batches = Calibration(samples, calib_batch).batches(b)
            if not batches:
                raise NetshrinkError("auto: the calibration data is empty")
            for group in discover(model, linears, b, batches[0]):   # call order; never-called layers left out
                p.linears.update(group)
    if "embedding_bits" in methods:
        p.tables = ({s.module_name: s.module for s in sites
                     if isinstance(s.module, nn.Embedding) and s.param_name == "weight"} if sites is not None else
                    {n: m for n, m in model.named_modules() if isinstance(m, nn.Embedding)})
    if not p.linears and not p.tables:
        raise NetshrinkError(f"auto: the one-shot search ({', '.join(methods)}) found no layer to choose for: "
                             "it needs Linear layers the forward pass calls (gptq) or nn.Embedding tables "
                             "(embedding_bits)")
    return p


def _gptq_method(p: Plan, bits: int = 4, per_layer: dict | None = None, include: list | None = None):
    kw = dict(p.gptq, bits=bits)
    if per_layer:
        kw["per_layer"] = per_layer
    if include:
        kw["targets"] = Targets(include=include)
    return create("gptq", **kw)


def _emb_method(p: Plan, name: str, bits: float):
    return create("embedding_bits", **p.embedding, bits=float(bits), targets=Targets(include=[f"{name}.weight"]))


def gptq_candidate(method, weight: torch.Tensor, h: torch.Tensor, bits: int) -> torch.Tensor:
    """The weight `method` (a gptq method, per channel) leaves at `bits` on Hessian `h`."""
    return gptq_quantize(weight.detach().float(), h, bits=int(bits), group_size=0, symmetric=method.symmetric,
                         act_order=method.act_order, damp=method.damp, block_size=method.block_size,
                         calibration=method.calibration).weight.to(weight.dtype)


def embedding_candidate(method, weight: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """The table `method` (embedding_bits) leaves, from its token counts (EmbeddingBits.prepare's rule)."""
    return method.quantized(weight, counts)[0]


def hessians(model: nn.Module, data, p: Plan) -> dict[str, torch.Tensor]:
    """H of each searched Linear's input in the model as given (gptq's calibration samples)."""
    b = as_batches(data)
    batches = Calibration(p.gptq["samples"], p.gptq["calib_batch"]).batches(b)
    out = {}
    for group in discover(model, p.linears, b, batches[0]):
        stats = collect(model, group, b, batches, hessian=True)
        for name, mod in group:
            out[name] = hessian_for(mod, stats)
    return out


def token_counts(model: nn.Module, data, p: Plan) -> dict[str, torch.Tensor]:
    """Token counts of each searched table over embedding_bits' calibration samples (its own pass)."""
    if not p.tables:
        return {}
    m = create("embedding_bits", **p.embedding)
    return m.token_counts(model, p.tables, PrepareContext(data=as_batches(data)))


@torch.no_grad()
def probe(model: nn.Module, data, calib: Calib, p: Plan, *, cache: bool = True,
          progress: bool = True) -> list[LayerTable]:
    """One table per searched layer (Linears in call order, then the embedding tables):
    each candidate's codec bytes, loss increase on the probe batches and Hessian proxy.
    `data`: the data the methods calibrate on (the recipe's); `calib`: the probe batches
    and the run's loss. The model is left as it was."""
    key = cache_key({"v": VERSION, "plan": p.describe(), "loss": calib.loss.name}, model, calib)
    path = cache_dir() / "auto" / f"oneshot-{key}.json"
    cached = read_tables(path, cache)
    if cached is not None:
        return cached
    was = model.training
    model.eval()
    hs = hessians(model, data, p) if p.linears else {}
    counts = token_counts(model, data, p)
    base = mean_loss(model, calib)
    total = len(p.linears) * len(p.gptq_bits) + len(p.tables) * len(p.embedding_bits)
    tables = []
    with progress_bar(total=total, desc="one-shot sensitivity", enabled=progress) as bar:
        gm = _gptq_method(p)
        for name, mod in p.linears.items():
            site = Site(name, "weight", mod)
            w, h = mod.weight.detach().clone(), hs[name]
            t = LayerTable(site.name, w.numel(), [Choice(0.0, b, "gptq") for b in p.gptq_bits])
            for c in t.choices:
                q = gptq_candidate(gm, w, h, c.bits)
                d = (q - w).float()
                t.measure(site, q, float(0.5 * ((d @ h) * d).sum()), model, calib, base)
                bar.advance(1)
            set_weight(site, w)
            tables.append(t)
        for name, mod in p.tables.items():
            site = Site(name, "weight", mod)
            w, cnt = mod.weight.detach().clone(), counts[name]
            t = LayerTable(site.name, w.numel(), [Choice(0.0, b, "embedding_bits") for b in p.embedding_bits])
            for c in t.choices:
                q = embedding_candidate(_emb_method(p, name, c.bits), w, cnt)
                per_row = ((q - w).float() ** 2).sum(1).double()
                t.measure(site, q, float((cnt * per_row).sum() / max(float(cnt.sum()), 1.0)), model, calib, base)
                bar.advance(1)
            set_weight(site, w)
            tables.append(t)
    model.train(was)
    write_tables(path, tables, cache)
    return tables


def floor_bytes(model: nn.Module, p: Plan) -> tuple[int, int]:
    """(bytes outside the searched weights, about the smallest file the choices reach):
    each Linear rounded to the nearest on gptq's grid at its fewest bits, each table's
    rows all at the fewest mean width (rounded down). Cheap: no Hessian, no probe."""
    gm = _gptq_method(p)
    weights = {n: m.weight.detach() for n, m in {**p.linears, **p.tables}.items()}
    fixed = file_bytes(model) - sum(tensor_bytes(w) for w in weights.values())
    floor = fixed
    for n, w in weights.items():
        if n in p.linears:
            q = rtn_quantize(w.float(), bits=min(p.gptq_bits), group_size=0, symmetric=gm.symmetric,
                             calibration=gm.calibration)
        else:
            rows = torch.full((w.shape[0],), max(int(min(p.embedding_bits)), p.embedding["min_bits"]))
            q = quantize_rows(w, rows, symmetric=False, calibration="minmax")
        floor += tensor_bytes(q.to(w.dtype))
    return fixed, floor


def uniform_options(tables: list[LayerTable]) -> list[list[int]]:
    """Uniform allocations: the same gptq bits for every Linear and the same mean width
    for every table (each pair of the two grids)."""
    kinds = [t.choices[0].method for t in tables]
    n_g = next((len(t.choices) for t in tables if t.choices[0].method == "gptq"), 1)
    n_e = next((len(t.choices) for t in tables if t.choices[0].method == "embedding_bits"), 1)
    return [[gi if k == "gptq" else ei for k in kinds] for gi in range(n_g) for ei in range(n_e)]


def recipe(p: Plan, choices: dict[str, Choice]) -> Recipe:
    """The recipe that compresses the model with these per-layer choices, no fine-tuning:
    one gptq step (per_layer: every layer's bits; the most common as `bits`) and one
    embedding_bits step per table."""
    steps = []
    gbits = {n: int(c.bits) for n, c in choices.items() if c.method == "gptq"}
    if gbits:
        common = Counter(gbits.values()).most_common(1)[0][0]
        steps.append(Step(_gptq_method(p, common, gbits, list(gbits))))
    for n, c in choices.items():
        if c.method == "embedding_bits":
            steps.append(Step(_emb_method(p, n.removesuffix(".weight"), c.bits)))
    return Recipe(steps, TrainConfig(epochs=0))


def proxy_agreement(tables: list[LayerTable]) -> float | None:
    """Spearman rank correlation between the Hessian proxy and the loss probes over
    every candidate of every layer (None with fewer than 3 candidates)."""
    a = [x for t in tables for x in t.fisher]
    b = [x for t in tables for x in t.loss]
    if len(a) < 3:
        return None

    def ranks(v):
        r = torch.empty(len(v))
        r[torch.argsort(torch.tensor(v, dtype=torch.float64), stable=True)] = torch.arange(len(v), dtype=torch.float32)
        return r - r.mean()

    ra, rb = ranks(a), ranks(b)
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den else None
