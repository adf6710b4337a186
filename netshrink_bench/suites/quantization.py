"""`netshrink bench quantization`: issue 4's "must show" figures.

1. Deep Compression (prune -> k-means -> centroid fine-tuning -> entropy-coded file) on
   LeNet-300-100 and LeNet-5, and soft weight-sharing on LeNet-300-100 (retraining
   under a learned Gaussian-mixture prior, merge, snap) with the shipped recipes, per
   fold of mnist5k, against the
   same-run baseline: accuracy drop and storage ratio (dense fp32 parameter bytes / bytes
   of the file `ns.save` writes), plus how close the file's entropy-coded streams come
   to their order-0 Shannon bound.
2. Post-training uniform quantization of the LeNet-300-100 baseline (no fine-tuning).
3. Int8 Linear (fbgemm kernels) vs fp32 at batch 64 and 1: a 1024-wide MLP and
   LeNet-300-100, with the output error; latency ratios measured in one process.
4. Codec throughput on a 10 M-parameter model (netshrink_bench.throughput).

The whole suite runs with one intra-op thread (the machine is shared; threads fixed).
"""
from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import torch

from netshrink_bench.results import BenchContext, fmt_mean_std
from netshrink_bench.table import Col, count, first, group, mean, section, stat
from netshrink.codec import inspect_archive
from netshrink.artifact import save
from netshrink.pipeline.compress import compress_
from netshrink.pipeline.recipe import Recipe
from netshrink.pipeline.registry import create
from netshrink.measure.latency import compare_latency
from netshrink.measure.plots import line_plot
from netshrink.train.loop import evaluate, predict
from netshrink.zoo import data as zoo_data
from netshrink.zoo import models as zoo_models
from netshrink.zoo.baseline import baseline

RECIPES = Path(__file__).resolve().parents[2] / "recipes"   # the repository root holds recipes/
SHARING = [  # (model, method label, recipe file, set_params overrides)
    ("lenet300_100", "deep_compression", "deep_compression.toml", {}),
    ("lenet5", "deep_compression", "deep_compression_lenet5.toml", {}),
    # Towards soft weight-sharing's ratios (64x / 160x): the same recipes, pruned harder.
    ("lenet300_100", "deep_compression, 95 % sparse", "deep_compression.toml",
     {"gradual_magnitude__sparsity": 0.95}),
    ("lenet5", "deep_compression, fc1 97 % sparse", "deep_compression_lenet5.toml",
     {"gradual_magnitude__sparsity": 0.97}),
    # Soft weight-sharing (Ullrich et al. 2017) with its recipe: 100 epochs of retraining
    # under the mixture prior (the mixture needs thousands of Adam steps to sharpen),
    # then merge and snap; no other fine-tuning.
    ("lenet300_100", "soft_sharing", "soft_sharing.toml", {}),
]


def _quick(recipe: Recipe) -> Recipe:
    """--quick: the same recipe with a short budget (2 epochs a phase, 1 for centroids)."""
    d = recipe.to_dict()
    d["finetune"]["epochs"] = min(d["finetune"]["epochs"], 2)
    for step in d["step"]:
        if "finetune" in step and "epochs" in step["finetune"]:
            step["finetune"]["epochs"] = min(step["finetune"]["epochs"], 1)
    return Recipe.from_dict(d)


def _file(model, folder: str) -> tuple[int, dict]:
    """(bytes on disk, stream totals {bytes, shannon_bytes}) of the saved artifact."""
    path = Path(folder) / "m.nshr"
    size = save(model, path)
    stream_bytes = shannon = 0.0
    for row in inspect_archive(path):
        for s in row.get("streams") or []:
            if s.get("coder") in ("huffman", "ans") and s.get("shannon_bytes"):
                stream_bytes += s["bytes"]
                shannon += s["shannon_bytes"]
    return size, {"coded_bytes": stream_bytes, "shannon_bytes": shannon}


def _sharing(ctx: BenchContext, model_name: str, label: str, recipe_file: str, overrides: dict, fold: int,
             rows: list) -> None:
    base_recipe = Recipe.from_toml(str(RECIPES / recipe_file)).set_params(**overrides)
    recipe = _quick(base_recipe) if ctx.quick else base_recipe
    train, test = zoo_data.load("mnist5k", fold)
    base = baseline(model_name, "mnist5k", fold, progress=False)
    base_acc = evaluate(base, test)
    dense = 4 * sum(p.numel() for p in base.parameters())
    net = copy.deepcopy(base)
    t0 = time.perf_counter()
    compress_(net, recipe, data=train, progress=False)   # from_toml above: fresh method objects
    seconds = time.perf_counter() - t0
    acc = evaluate(net, test)
    with tempfile.TemporaryDirectory() as d:
        size, streams = _file(net, d)
    nz = sum(int((p != 0).sum()) for p in net.parameters())
    row = dict(model=model_name, method=label, recipe=recipe_file, fold=fold, baseline_acc=base_acc,
               acc=acc, drop_pp=100 * (base_acc - acc), dense_bytes=dense, file_bytes=size,
               storage_ratio=dense / size, nonzero_frac=nz / (dense // 4), compress_s=seconds, **streams)
    ctx.record(**row)
    rows.append(row)
    ctx.log(f"{model_name} {label} fold {fold}: {100 * acc:.2f} % (baseline {100 * base_acc:.2f} %), "
            f"{size:,} B, {dense / size:.1f}x, {seconds:.0f} s")


def _ptq(ctx: BenchContext, fold: int, rows: list) -> None:
    """Uniform PTQ of the LeNet-300-100 baseline: bits x granularity x calibration."""
    if True:
        _, test = zoo_data.load("mnist5k", fold)
        base = baseline("lenet300_100", "mnist5k", fold, progress=False)
        base_acc = evaluate(base, test)
        for bits in (8, 4, 3, 2):
            for gran, calib in (("tensor", "minmax"), ("channel", "minmax"), ("channel", "mse")):
                net = copy.deepcopy(base)
                compress_(net, Recipe.of(create("quantize", bits=bits, granularity=gran, calibration=calib)),
                          progress=False)
                with tempfile.TemporaryDirectory() as d:
                    size, _ = _file(net, d)
                dense = 4 * sum(p.numel() for p in base.parameters())
                row = dict(model="lenet300_100", method=f"quantize {bits}b {gran} {calib}", fold=fold, bits=bits,
                           baseline_acc=base_acc, acc=evaluate(net, test), dense_bytes=dense, file_bytes=size,
                           storage_ratio=dense / size)
                row["drop_pp"] = 100 * (base_acc - row["acc"])
                ctx.record(**row)
                rows.append(row)


def _int8(ctx: BenchContext) -> list:
    """Int8Linear vs fp32: speedup (same process, interleaved) and output error."""
    out = []
    torch.manual_seed(0)
    mlp = zoo_models.create("mlp", in_features=1024, hidden=[1024, 1024, 1024], num_classes=1024)
    _, test = zoo_data.load("mnist5k", 0)
    lenet = baseline("lenet300_100", "mnist5k", 0, progress=False)
    subjects = [("mlp 1024x4 (random weights)", mlp, lambda b: torch.randn(b, 1024), None),
                ("lenet300_100 (fold 0 baseline)", lenet,
                 lambda b: torch.stack([test[i][0] for i in range(b)]), test)]
    for name, fp32, example, data in subjects:
        q = copy.deepcopy(fp32)
        compress_(q, Recipe.of(create("quantize", bits=8, execute="int8", targets=["type:Linear"])), progress=False)
        for batch in (64, 1):
            x = example(batch)
            q_ms, ref_ms = compare_latency(q, fp32, x, rounds=15 if not ctx.quick else 3, min_run_time=0.05)
            q_cpu, ref_cpu = compare_latency(q, fp32, x, rounds=15 if not ctx.quick else 3, min_run_time=0.05, clock="cpu")
            with torch.no_grad():
                y, y_ref = q(x), fp32(x)
            row = dict(model=name, method="int8 linear", batch=batch, fp32_ms=ref_ms, int8_ms=q_ms,
                       speedup=ref_ms / q_ms, fp32_cpu_ms=ref_cpu, int8_cpu_ms=q_cpu, cpu_speedup=ref_cpu / q_cpu, max_abs_err=float((y - y_ref).abs().max()),
                       rel_err=float((y - y_ref).norm() / y_ref.norm()),
                       threads=torch.get_num_threads())
            if data is not None and batch == 64:
                lq, lab = predict(q, data)
                lf, _ = predict(fp32, data)
                row.update(acc_fp32=float((lf.argmax(1) == lab).float().mean()),
                           acc_int8=float((lq.argmax(1) == lab).float().mean()),
                           agreement=float((lq.argmax(1) == lf.argmax(1)).float().mean()))
            ctx.record(**row)
            out.append(row)
    return out


def _codec(ctx: BenchContext) -> dict | None:
    try:
        from netshrink_bench.throughput import measure_throughput
    except ImportError:
        return None
    r = measure_throughput(2_000_000 if ctx.quick else 10_000_000)
    ctx.record(method="codec throughput", **r)
    return r


def run(ctx: BenchContext) -> None:
    torch.set_num_threads(1)
    int8 = _int8(ctx)
    codec = _codec(ctx)
    sharing: list = []
    ptq: list = []
    # Folds outermost, the tables rewritten after each, so a run cut short still
    # reports every fold it finished (the table says how many).
    for fold in ctx.folds:
        for model_name, label, recipe_file, overrides in SHARING:
            _sharing(ctx, model_name, label, recipe_file, overrides, fold, sharing)
        _ptq(ctx, fold, ptq)
        _write(ctx, sharing, ptq, int8, codec)


def _recipe(rs: list) -> str:
    """The recipe file and its overrides, as SHARING gives them."""
    model, label = rs[0]["model"], rs[0]["method"]
    recipe_file, overrides = next((f, o) for m, lab, f, o in SHARING if (m, lab) == (model, label))
    return f"recipes/{recipe_file}" + "".join(f" {k.split('__')[1]}={v}" for k, v in overrides.items())


def _entropy_gap(rs: list) -> str:
    gap = [100 * (r["coded_bytes"] / r["shannon_bytes"] - 1) for r in rs if r["shannon_bytes"]]
    return fmt_mean_std(gap, scale=1) if gap else "n/a"


# -- tables: one group of rows (every fold of one configuration) per table row ------------
SHARING_COLS = [
    Col("model", first("model")), Col("method", first("method")), Col("recipe", _recipe),
    Col("baseline acc %", stat("baseline_acc")), Col("compressed acc %", stat("acc")),
    Col("drop pp", stat("drop_pp", scale=1)), Col("file bytes", mean("file_bytes", "{:,.0f}")),
    Col("storage ratio x", stat("storage_ratio", scale=1, digits=1)),
    Col("non-zeros %", stat("nonzero_frac", digits=1)), Col("coded streams vs entropy %", _entropy_gap),
    Col("compress s", mean("compress_s", "{:.0f}")), Col("folds", count()),
]
PTQ_COLS = [
    Col("method", first("method")), Col("baseline acc %", stat("baseline_acc")), Col("acc %", stat("acc")),
    Col("drop pp", stat("drop_pp", scale=1)), Col("storage ratio x", stat("storage_ratio", scale=1, digits=1)),
    Col("folds", count()),
]
INT8_COLS = [   # one row per measurement
    Col("model", first("model")), Col("batch", first("batch")), Col("fp32 ms", first("fp32_ms", "{:.3f}")),
    Col("int8 ms", first("int8_ms", "{:.3f}")), Col("speedup x (wall)", first("speedup", "{:.2f}")),
    Col("fp32 CPU ms", first("fp32_cpu_ms", "{:.3f}")), Col("int8 CPU ms", first("int8_cpu_ms", "{:.3f}")),
    Col("speedup x (CPU time)", first("cpu_speedup", "{:.2f}")), Col("max |err|", first("max_abs_err", "{:.2e}")),
    Col("relative err", first("rel_err", "{:.2e}")),
    Col("accuracy fp32 → int8 %", first(lambda r: f"{100 * r['acc_fp32']:.2f} → {100 * r['acc_int8']:.2f}"
                                         if "acc_fp32" in r else "")),
]
CODEC_COLS = [
    Col("parameters", first("n_params", "{:,}")), Col("dense MB", first("dense_mb", "{:.1f}")),
    Col("file bytes", first("file_bytes", "{:,}")), Col("ratio x", first("ratio", "{:.1f}")),
    Col("encode MB/s", first("encode_mb_s", "{:.1f}")), Col("decode MB/s", first("decode_mb_s", "{:.1f}")),
]


def _write(ctx: BenchContext, sharing: list, ptq: list, int8: list, codec: dict | None) -> None:
    sections = [
        section("Pruning + weight sharing + entropy-coded file (mean ± std over folds)", SHARING_COLS,
                group(sharing, "model", "method")),
        section("Post-training uniform quantization of LeNet-300-100 (no fine-tuning)", PTQ_COLS,
                group(ptq, "method")),
        section("Int8 Linear (fbgemm, per-channel weights, dynamic 8-bit activations) vs fp32, "
                "1 thread, same process", INT8_COLS, [[r] for r in int8]),
    ]
    if codec:
        sections.append(section("Codec throughput (netshrink_bench.throughput.measure_throughput)", CODEC_COLS,
                                [[codec]]))

    # -- plot: accuracy drop vs storage ratio, one point per fold ------------------------
    series = {}
    for model_name, label, _, _ in SHARING:
        rs = sorted((r for r in sharing if r["model"] == model_name and r["method"] == label),
                    key=lambda r: r["storage_ratio"])
        series[f"{model_name} {label}"] = ([r["storage_ratio"] for r in rs], [r["drop_pp"] for r in rs])
    for label in ("quantize 8b channel minmax", "quantize 4b channel mse", "quantize 3b channel mse"):
        rs = [r for r in ptq if r["method"] == label]
        if rs:
            series[f"lenet300_100 {label}"] = ([r["storage_ratio"] for r in rs], [r["drop_pp"] for r in rs])
    line_plot(ctx.dir / "quantization_ratio_vs_drop.png", series, xlabel="storage ratio (x, log)",
              ylabel="accuracy drop vs same-run baseline (pp)", baseline=0.0, logx=True,
              title="mnist5k: storage ratio vs accuracy drop (one point per fold)")
    ctx.write_markdown(
        "Quantization and weight sharing", sections, plots=["quantization_ratio_vs_drop.png"],
        notes="Storage ratio = dense fp32 parameter bytes of the baseline / bytes of the file `ns.save` writes "
              "(headers included). Drops are against the baseline measured in the same run on the same fold. "
              "'coded streams vs entropy' = Huffman/ANS-coded stream bytes (tables included) over their order-0 "
              "Shannon bound, minus 1. Int8 speedups are fp32 ms / int8 ms, timed interleaved in one process: wall "
              "clock by netshrink.measure.latency.compare_latency (median of 15 rounds), and CPU time per call "
              "(median of 15 interleaved rounds), which on this shared, overloaded machine is the steadier of the two.")
