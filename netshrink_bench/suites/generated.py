"""`netshrink bench generated`: weights generated from fewer numbers (issue 8).

Per fold of mnist5k (5 folds; --quick: fold 0, shorter budgets), on one thread:

1. HashedNets (Chen et al. 2015) on LeNet-300-100 at 1/8 and 1/64 of its weights:
   the hashed network (from scratch, and from the trained baseline) against the
   "equivalent size" dense MLP 784-h1-h2-10 (h2 = round(h1 / 3), the largest with no more
   stored parameters than the hashed one), both trained from scratch with the same budget.
2. Frequency packing (CNNpack-style) on LeNet-5 at several kept fractions, beside
   global magnitude pruning + k-means (Deep Compression bits: conv 8, FC 5) at similar
   bytes, both with one global threshold and the same fine-tuning epochs (pruning keeps
   dense layers, runtime="dense", so that k-means quantizes every layer and the codec
   stores the zeros as gaps);
   bytes are the saved .nshr file.
3. resnet_small (widths 8-16-32, 2-2-2 blocks: a narrower configuration so that five
   folds fit the time budget): untied baseline, static hypernetwork at several sizes
   (tile 8, Nz = d), all identical convs tied; stored parameters vs accuracy.
4. Stochastic depth on the same resnet: the baseline fine-tuned with survival
   probabilities p_L = 0.5 (Huang et al.) and 0.8, then blocks removed greedily (order
   chosen on 1,000 training images, BatchNorm statistics re-estimated on them where that
   helps there; accuracy on the test fold); how many blocks go for <= 1 pp against the
   same-fold baseline. The same removal on the baseline without stochastic-depth
   training is shown beside it.
"""
from __future__ import annotations

import copy
import os
import tempfile

import torch
from torch.utils.data import Subset

import netshrink as ns
from netshrink_bench.results import fmt_mean_std, mean_std
from netshrink_bench.table import Col, first, group, mean, section, stat
from netshrink.measure.latency import compare_latency
from netshrink.measure.plots import line_plot
from netshrink.methods.stochastic_depth import removable, removal_order, residual_blocks

RESNET = {"widths": [8, 16, 32], "blocks": [2, 2, 2]}
FACTORS = [1 / 8, 1 / 64]


def _budgets(quick: bool) -> dict:
    return {
        "hash_epochs": 3 if quick else 8,           # scratch training: hashed and equivalent dense alike
        "hash_ft": 1 if quick else 3,               # hashed from the trained baseline
        "freq_keep": [0.1, 0.03] if quick else [0.1, 0.04, 0.015],
        "prune_sparsity": [0.9, 0.97] if quick else [0.9, 0.96, 0.985],
        "lenet5_ft": 2,                             # epochs in all (pruning + k-means: 1 each)
        "resnet_config": ns.TrainConfig(epochs=5, lr=2e-3, weight_decay=1e-4, optimizer="adamw"),
        "hyper_sizes": [4, 16] if quick else [4, 16, 32],
        "resnet_ft": 1 if quick else 2,
        "sd_p_last": [0.5] if quick else [0.5, 0.8],
        "sd_epochs": 1 if quick else 2,
    }


def _stored_params(model) -> int:
    """Parameters actually stored (shared ones once; generated / tied kernels not at all)."""
    return sum(p.numel() for p in model.parameters())


def _file_bytes(model) -> int:
    with tempfile.TemporaryDirectory() as d:
        return ns.save(model, os.path.join(d, "m.nshr"))


def _compress(model, *methods, epochs: int, data, lr: float = 1e-3, optimizer: str = "adam", wd: float = 0.0):
    cfg = ns.TrainConfig(epochs=epochs, lr=lr, optimizer=optimizer, weight_decay=wd)
    return ns.compress_(model, ns.Recipe.of(*methods, finetune=cfg), data=data, progress=False)


def equivalent_mlp(stored: int) -> list[int]:
    """Hidden sizes [h1, round(h1/3)] of the largest LeNet-300-100-shaped MLP with at most
    `stored` parameters (784 inputs, 10 classes, biases included)."""
    def count(h1):
        h2 = max(1, round(h1 / 3))
        return 784 * h1 + h1 + h1 * h2 + h2 + h2 * 10 + 10
    h1 = 1
    while count(h1 + 1) <= stored:
        h1 += 1
    return [h1, max(1, round(h1 / 3))]


# -- 1. HashedNets ---------------------------------------------------------------
def _hashing(ctx, fold, train, test, b):
    base = ns.zoo.baseline("lenet300_100", "mnist5k", fold, progress=False)
    base_acc, dense = ns.evaluate(base, test), _stored_params(base)
    ctx.record(part="hashing", fold=fold, config="LeNet-300-100 (dense baseline)", factor=1.0, accuracy=base_acc,
               stored_params=dense, bytes=_file_bytes(base))
    for f in FACTORS:
        torch.manual_seed(fold)
        scratch = _compress(ns.zoo.models.create("lenet300_100"),
                            ns.create("hashing", ratio=f, init="scratch", seed=fold), epochs=b["hash_epochs"], data=train)
        stored = _stored_params(scratch)
        trained = _compress(copy.deepcopy(base), ns.create("hashing", ratio=f, init="trained", seed=fold),
                            epochs=b["hash_ft"], data=train)
        hidden = equivalent_mlp(stored)
        torch.manual_seed(fold)
        eq = ns.zoo.models.create("mlp", in_features=784, hidden=hidden)
        ns.fit(eq, train, ns.TrainConfig(epochs=b["hash_epochs"]), progress=False)
        x = torch.stack([test[i][0] for i in range(64)])
        ms, ref_ms = compare_latency(scratch, base, x)
        for label, m in [(f"HashNet 1/{round(1 / f)} (scratch)", scratch),
                         (f"HashNet 1/{round(1 / f)} (from trained)", trained),
                         (f"dense 784-{hidden[0]}-{hidden[1]}-10 (equivalent size)", eq)]:
            row = dict(part="hashing", fold=fold, config=label, factor=f, accuracy=ns.evaluate(m, test),
                       stored_params=_stored_params(m), bytes=_file_bytes(m), baseline_accuracy=base_acc)
            if m is scratch:
                row["speedup_b64"] = ref_ms / ms
            ctx.record(**row)
        ctx.log(f"fold {fold} hashing 1/{round(1 / f)}: done")


# -- 2. Frequency vs magnitude + k-means ---------------------------------------------
def _frequency(ctx, fold, train, test, b):
    base = ns.zoo.baseline("lenet5", "mnist5k", fold, progress=False)
    base_acc, dense_bytes = ns.evaluate(base, test), 4 * _stored_params(base)
    ctx.record(part="frequency", fold=fold, method="baseline", setting="dense", accuracy=base_acc,
               bytes=_file_bytes(base), storage_ratio=dense_bytes / _file_bytes(base))
    for keep in b["freq_keep"]:
        m = _compress(copy.deepcopy(base), ns.create("frequency", sparsity=1 - keep, bits=5, block=8, scope="global"),
                      epochs=b["lenet5_ft"], data=train, lr=5e-4)
        nb = _file_bytes(m)
        ctx.record(part="frequency", fold=fold, method="frequency (DCT, global, 5-bit k-means)", setting=f"keep {keep:g}",
                   accuracy=ns.evaluate(m, test), bytes=nb, storage_ratio=dense_bytes / nb, baseline_accuracy=base_acc)
    for s in b["prune_sparsity"]:
        m = _compress(copy.deepcopy(base), ns.create("magnitude", sparsity=s, scope="global", runtime="dense"),
                      ns.create("kmeans", bits=5, per_layer={"type:Conv2d": 8}), epochs=b["lenet5_ft"] // 2, data=train,
                      lr=5e-4)
        nb = _file_bytes(m)
        ctx.record(part="frequency", fold=fold, method="global magnitude + k-means (conv 8 / FC 5 bits)",
                   setting=f"sparsity {s:g}", accuracy=ns.evaluate(m, test), bytes=nb, storage_ratio=dense_bytes / nb,
                   baseline_accuracy=base_acc)
    ctx.log(f"fold {fold} frequency: done")


# -- 3. Hypernetwork / tie, 4. stochastic depth ------------------------------------
def _removal_curve(model, train, test):
    """Test accuracy after removing 0, 1, 2 ... blocks, each chosen greedily on 1,000
    training images (with or without BatchNorm statistics re-estimated on them,
    whichever is better there)."""
    calib = Subset(train, range(min(1000, len(train))))
    m = copy.deepcopy(model).eval()
    accs, order = [ns.evaluate(m, test)], []
    while any(removable(blk) for _, blk in residual_blocks(m)):
        order += [p for p, _ in removal_order(m, calib, limit=1, recalibrate=True)]
        accs.append(ns.evaluate(m, test))
    return order, accs, m


def _resnet(ctx, fold, train, test, b):
    cfg = b["resnet_config"]
    base = ns.zoo.baseline("resnet_small", "mnist5k", fold, config=cfg, progress=False, **RESNET)
    base_acc = ns.evaluate(base, test)
    ctx.record(part="hyper", fold=fold, config="untied (baseline)", size=None, accuracy=base_acc,
               stored_params=_stored_params(base), bytes=_file_bytes(base))
    ft = dict(epochs=b["resnet_ft"], data=train, lr=1e-3, optimizer="adamw", wd=1e-4)
    for z in b["hyper_sizes"]:
        m = _compress(copy.deepcopy(base), ns.create("hypernetwork", tile=8, z_dim=z, hidden=z, seed=fold), **ft)
        ctx.record(part="hyper", fold=fold, config=f"hypernetwork Nz = d = {z}", size=z, accuracy=ns.evaluate(m, test),
                   stored_params=_stored_params(m), bytes=_file_bytes(m), baseline_accuracy=base_acc)
    m = _compress(copy.deepcopy(base), ns.create("tie"), **ft)
    ctx.record(part="hyper", fold=fold, config="fully tied (identical convs share one kernel)", size=0,
               accuracy=ns.evaluate(m, test), stored_params=_stored_params(m), bytes=_file_bytes(m),
               baseline_accuracy=base_acc)
    ctx.log(f"fold {fold} hypernetwork / tie: done")

    n_blocks = len(residual_blocks(base))
    n_removable = sum(removable(blk) for _, blk in residual_blocks(base))
    x = torch.stack([test[i][0] for i in range(64)])
    models = [("baseline (no stochastic depth)", base)]
    for p_last in b["sd_p_last"]:
        sd = _compress(copy.deepcopy(base), ns.create("stochastic_depth", p_last=p_last), epochs=b["sd_epochs"],
                       data=train, lr=1e-3, optimizer="adamw", wd=1e-4)
        models.append((f"stochastic depth p_L = {p_last:g} ({b['sd_epochs']} epochs from the baseline)", sd))
    for label, model in models:
        order, accs, smallest = _removal_curve(model, train, test)
        ok = max((k for k, a in enumerate(accs) if a >= base_acc - 0.01), default=0)
        ms, ref_ms = compare_latency(smallest, base, x)
        ctx.record(part="depth", fold=fold, config=label, accuracies=accs, order=order, removable_at_1pp=ok,
                   blocks=n_blocks, removable=n_removable, baseline_accuracy=base_acc,
                   speedup_b64_all_removed=ref_ms / ms)
    ctx.log(f"fold {fold} stochastic depth: done")


# -- report ---------------------------------------------------------------------------
def _pp(rows):
    return fmt_mean_std([r["accuracy"] - r["baseline_accuracy"] for r in rows if "baseline_accuracy" in r])


def _delta(rs):   # against the dense / untied model, where the group has one
    return _pp(rs) if "baseline_accuracy" in rs[0] else "—"


def _accuracies(rs):   # accuracy after removing 0, 1, 2 ... blocks, mean over folds
    kmax = min(len(r["accuracies"]) for r in rs)
    return " / ".join(f"{100 * mean_std([r['accuracies'][k] for r in rs])[0]:.1f}" for k in range(kmax))


HASHING_COLS = [
    Col("network", first("config")), Col("stored params", mean("stored_params", "{:,.0f}")),
    Col("file bytes", mean("bytes", "{:,.0f}")), Col("accuracy", stat("accuracy")), Col("Δ vs dense (pp)", _delta),
    Col("speedup b64", lambda rs: mean("speedup_b64", "{:.2f}x")(rs) if "speedup_b64" in rs[0] else ""),
]
FREQUENCY_COLS = [
    Col("method", first("method")), Col("setting", first("setting")), Col("file bytes", mean("bytes", "{:,.0f}")),
    Col("storage ratio", mean("storage_ratio", "{:.1f}x")), Col("accuracy", stat("accuracy")),
    Col("Δ vs baseline (pp)", lambda rs: _pp(rs) if rs[0]["method"] != "baseline" else "—"),
]
HYPER_COLS = [
    Col("configuration", first("config")), Col("stored params", mean("stored_params", "{:,.0f}")),
    Col("file bytes", mean("bytes", "{:,.0f}")), Col("accuracy", stat("accuracy")), Col("Δ vs untied (pp)", _delta),
]
DEPTH_COLS = [
    Col("training", first("config")),
    Col("removable blocks (identity shortcut)", first(lambda r: f"{r['removable']} of {r['blocks']}")),
    Col("blocks removed at <= 1 pp (mean ± std)", stat("removable_at_1pp", scale=1.0, digits=1)),
    Col("accuracy % after removing 0 / 1 / 2 ... blocks (greedy)", _accuracies),
    Col("speedup b64, all removable gone", mean("speedup_b64_all_removed", "{:.2f}x")),
]


def run(ctx) -> None:
    torch.set_num_threads(1)
    b = _budgets(ctx.quick)
    for fold in ctx.folds:
        train, test = ns.zoo.data.load("mnist5k", fold)
        _hashing(ctx, fold, train, test, b)
        _frequency(ctx, fold, train, test, b)
        _resnet(ctx, fold, train, test, b)
    _report(ctx, b)


def _report(ctx, b) -> None:
    rows, sections, plots = ctx.rows, [], []
    n = len(ctx.folds)

    h = group(rows, "config", where=lambda r: r.get("part") == "hashing")
    sections.append(section("HashedNets on LeNet-300-100 (mnist5k, accuracy %, mean ± std over folds)",
                            HASHING_COLS, h))
    series = {}
    for kind in ("scratch", "from trained", "equivalent size"):
        pts = sorted((mean_std([r["stored_params"] for r in rs])[0], mean_std([r["accuracy"] for r in rs])[0])
                     for rs in h if kind in rs[0]["config"])
        if pts:
            series["HashNet (" + kind + ")" if kind != "equivalent size" else "dense, equivalent size"] = (
                [p[0] for p in pts], [100 * p[1] for p in pts])
    base_rows = [r for r in rows if r.get("part") == "hashing" and r["factor"] == 1.0]
    line_plot(ctx.dir / "generated_hashing.png", series, xlabel="stored parameters", ylabel="test accuracy %",
              title="HashedNets vs equivalent-size dense (LeNet-300-100)", logx=True,
              baseline=100 * mean_std([r["accuracy"] for r in base_rows])[0])
    plots.append("generated_hashing.png")

    f = [r for r in rows if r.get("part") == "frequency"]
    groups = sorted(group(f, "method", "setting"), key=lambda rs: mean_std([r["bytes"] for r in rs])[0])
    series = {}
    for rs in groups:
        if rs[0]["method"] != "baseline":
            xs, ys = series.setdefault(rs[0]["method"], ([], []))
            xs.append(mean_std([r["storage_ratio"] for r in rs])[0])
            ys.append(100 * mean_std([r["accuracy"] for r in rs])[0])
    sections.append(section("Frequency packing vs magnitude pruning + k-means on LeNet-5 (sorted by file size)",
                            FREQUENCY_COLS, groups))
    series = {k: tuple(map(list, zip(*sorted(zip(*v))))) for k, v in series.items()}
    line_plot(ctx.dir / "generated_frequency.png", series, xlabel="storage ratio (dense fp32 / file bytes)",
              ylabel="test accuracy %", title="LeNet-5: frequency packing vs pruning + k-means", logx=True,
              baseline=100 * mean_std([r["accuracy"] for r in f if r["method"] == "baseline"])[0])
    plots.append("generated_frequency.png")

    hy = group(rows, "config", where=lambda r: r.get("part") == "hyper")
    pts = [(mean_std([r["stored_params"] for r in rs])[0], 100 * mean_std([r["accuracy"] for r in rs])[0],
            rs[0]["config"]) for rs in hy]
    sections.append(section(f"Hypernetwork and tying on resnet_small (widths {RESNET['widths']}, blocks "
                            f"{RESNET['blocks']}; fine-tune {b['resnet_ft']} epochs)", HYPER_COLS, hy))
    hyper_pts = sorted((p[0], p[1]) for p in pts if p[2].startswith("hypernetwork"))
    series = {"hypernetwork (Nz = d)": ([p[0] for p in hyper_pts], [p[1] for p in hyper_pts])}
    for p in pts:
        if not p[2].startswith("hypernetwork"):
            series[p[2]] = ([p[0]], [p[1]])
    line_plot(ctx.dir / "generated_hyper.png", series, xlabel="stored parameters", ylabel="test accuracy %",
              title="resnet_small: how much is tied vs accuracy", logx=True)
    plots.append("generated_hyper.png")

    d = group(rows, "config", where=lambda r: r.get("part") == "depth")
    series, errors = {}, {}
    for rs in d:
        kmax = min(len(r["accuracies"]) for r in rs)
        per_k = [[r["accuracies"][k] for r in rs] for k in range(kmax)]
        series[rs[0]["config"]] = (list(range(kmax)), [100 * mean_std(a)[0] for a in per_k])
        errors[rs[0]["config"]] = [100 * mean_std(a)[1] for a in per_k]
    sections.append(section("Stochastic depth on resnet_small: blocks removable at inference for <= 1 pp",
                            DEPTH_COLS, d))
    line_plot(ctx.dir / "generated_depth.png", series, errors=errors, xlabel="residual blocks removed",
              ylabel="test accuracy %", title="resnet_small: removing blocks after stochastic depth",
              baseline=100 * mean_std([r["baseline_accuracy"] for rs in d for r in rs])[0])
    plots.append("generated_depth.png")

    notes = (f"{n} fold(s) of mnist5k; accuracy in %, mean ± std over folds; Δ in percentage points against the "
             "same-fold baseline trained in this run's cache. Stored params count every parameter the file holds "
             "(buckets, kept coefficients' tensors, generators, embeddings, biases, BatchNorm); file bytes are the "
             "saved .nshr. Hashed, frequency and generated layers materialise a dense weight at load, so they save "
             "storage, not FLOPs (the speedup column says so). Budgets: " + repr({k: v for k, v in b.items()
                                                                                  if k != 'resnet_config'})
             + f"; resnet baseline {b['resnet_config'].epochs} epochs AdamW.")
    ctx.write_markdown("Generated weights: hashing, frequency, hypernetworks, tying, stochastic depth", sections,
                       plots=plots, notes=notes)
