"""`embedding_bits`: embedding tables quantized row by row, each row's bit width from
how often calibration text uses it (the diagonal Hessian of a one-hot input).

    >>> ns.create("embedding_bits", bits=4.5, min_bits=3, max_bits=8)

The tokens a model reads are Zipf-distributed: in 256 calibration sentences of the
Python docs, 991 of MiniLM's 30,522 word-embedding rows occur at all. An error in a row
costs in proportion to how often the row is read, so uniform bits spend most of the
table's bytes on rows the text never reaches. Here each row gets
b_i = θ + ½ log2((c_i + prior) r_i²) bits (netshrink.functional.row_bits: reverse
water-filling; c_i the row's count over the calibration batches, r_i its range), with θ
set so the table's mean is `bits`, and `prior` the expected count of a row the
calibration missed (default "good_turing": N1 / U per table, rows seen once over rows
unseen); the row is then quantized on its own uniform grid
(per-row scale and zero point, min-max or MSE clipping). The codec stores every row as
a scale, an offset and entropy-coded codes. Position embeddings are counted the same
way (positions past the calibration text's longest get the width of unseen rows).
Rows the calibration never reached get the fewest bits: calibrate on text like the
text the model will read, and raise `min_bits` for safety on other text.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from netshrink.core.batches import StopForward, as_batches, run_each
from netshrink.core.context import PrepareContext
from netshrink.core.method import Method
from netshrink.core.targets import select
from netshrink.errors import RecipeError
from netshrink.functional.row_bits import good_turing_prior, quantize_rows, row_bits
from netshrink.methods.calibrated.layerwise import Calibration


@dataclass
class EmbeddingBits(Method):
    name = "embedding_bits"
    summary = ("embedding rows quantized at bits chosen by calibration token counts "
               "(diagonal Hessian, reverse water-filling), mean bits per table as the budget")
    finetunes = False

    bits: float = 5.0             # mean bits per row, over each table
    min_bits: int = 2
    max_bits: int = 8
    prior: float | Literal["good_turing"] = "good_turing"   # occurrences credited to every row
    # (a number, or Good-Turing's estimate for an unseen row from each table's counts)
    symmetric: bool = False
    calibration: Literal["minmax", "mse"] = "mse"
    samples: int = 16384          # calibration samples counted (cheap: the passes stop after the tables)
    calib_batch: int = 32

    def validate(self):
        self.check(1 <= self.min_bits <= 8, "min_bits", "an integer in 1..8 (1: two levels per row)")
        self.check(self.min_bits >= 2 or not self.symmetric, "min_bits",
                   ">= 2 with symmetric = true (a symmetric 1-bit grid has no level but 0)")
        self.check(self.min_bits <= self.max_bits <= 8, "max_bits", f"an integer in {self.min_bits}..8")
        self.check(self.min_bits <= self.bits <= self.max_bits, "bits",
                   f"a mean width in [min_bits, max_bits] = [{self.min_bits}, {self.max_bits}]")
        self.check(self.prior == "good_turing" or self.prior > 0, "prior", '> 0 or "good_turing"')
        self.check(self.samples >= 1, "samples", "an integer >= 1")
        self.check(self.calib_batch >= 1, "calib_batch", "an integer >= 1")

    def tables(self, model: nn.Module) -> dict[str, nn.Embedding]:
        if not (self.targets.include or self.targets.exclude):
            return {n: m for n, m in model.named_modules() if isinstance(m, nn.Embedding)}
        sites = select(model, self.targets)
        bad = [s.name for s in sites if not isinstance(s.module, nn.Embedding) or s.param_name != "weight"]
        if bad:
            raise RecipeError(f"{self.name}: works on nn.Embedding tables only; not embedding weights: {bad[:4]} "
                              "(restrict targets, e.g. 'type:Embedding')")
        return {s.module_name: s.module for s in sites}

    @torch.no_grad()
    def token_counts(self, model: nn.Module, tables: dict[str, nn.Embedding], ctx: PrepareContext):
        counts = {n: torch.zeros(m.num_embeddings, dtype=torch.float64) for n, m in tables.items()}

        def counter(name):
            def hook(module, args):
                ids = args[0].detach().reshape(-1).cpu().long()
                counts[name] += torch.bincount(ids, minlength=module.num_embeddings).double()
            return hook

        data = as_batches(ctx.data)
        batches = Calibration(self.samples, self.calib_batch).batches(data)
        if not batches:
            raise RecipeError(f"{self.name}: the calibration data is empty")
        # Counting needs only the tables' inputs: the first batch runs whole and records how
        # often each table is called in one pass (a table shared by an encoder and a decoder
        # is read twice); every later pass stops once each table has had as many calls.
        calls: dict[str, int] = {}
        first: dict[str, int] | None = None

        def done(name):
            def hook(module, args, output):
                calls[name] = calls.get(name, 0) + 1
                if first is not None and all(calls.get(n, 0) >= k for n, k in first.items()):
                    raise StopForward
            return hook

        def before(batch):
            nonlocal first
            if calls and first is None:
                first = dict(calls)
            calls.clear()

        handles = [m.register_forward_pre_hook(counter(n)) for n, m in tables.items()]
        handles += [m.register_forward_hook(done(n)) for n, m in tables.items()]
        was = model.training
        model.eval()
        try:
            run_each(data, model, batches, before=before)
        finally:
            model.train(was)
            for h in handles:
                h.remove()
        return counts

    def quantized(self, weight: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(the table on its rows' grids, bits per row, the prior used) from the token counts."""
        w = weight.detach()
        ranges = (w.abs().amax(1) * 2) if self.symmetric else (w.amax(1).clamp(min=0) - w.amin(1).clamp(max=0))
        prior = good_turing_prior(counts) if self.prior == "good_turing" else float(self.prior)
        bits = row_bits(counts, ranges, mean_bits=self.bits, lo=self.min_bits, hi=self.max_bits, prior=prior)
        return quantize_rows(w, bits, symmetric=self.symmetric, calibration=self.calibration).to(w.dtype), bits, prior

    def prepare(self, model: nn.Module, ctx: PrepareContext) -> None:
        if ctx.data is None:
            raise RecipeError(f"{self.name}: needs calibration data (compress_(model, recipe, data=...))")
        tables = self.tables(model)
        if not tables:
            raise RecipeError(f"{self.name}: the model has no nn.Embedding to quantize")
        counts = self.token_counts(model, tables, ctx)
        self.report_: dict[str, dict] = {}
        for name, table in tables.items():
            w = table.weight.detach()
            q, bits, prior = self.quantized(w, counts[name])
            with torch.no_grad():
                table.weight.copy_(q)
            seen = counts[name] > 0
            self.report_[name] = {
                "mean_bits": float(bits.double().mean()), "prior": prior, "rows_seen": int(seen.sum()), "rows": int(bits.numel()),
                "rows_by_bits": {int(b): int((bits == b).sum()) for b in torch.unique(bits).tolist()},
                "mean_bits_seen": float(bits[seen].double().mean()) if seen.any() else None}
