"""`netshrink bench lowrank`: low-rank factorisation and randomised SVD.

1. LeNet-300-100 on mnist5k (cached baselines, every fold): accuracy vs parameter
   ratio for plain truncated SVD, data-aware (whitened) SVD at the same per-layer
   ranks, and a global budget (plain / data-aware; the output layer stays dense),
   calibrated on the whole training fold; before fine-tuning (with the output error of the
   logits, ‖Ŷ − Y‖_F / ‖Y‖_F on the test fold) and after `ft` epochs. At one ratio the
   fine-tuning also runs with `distill` from the original model (composition).
2. Randomised SVD (Halko et al.; Gaussian and CountSketch, 10 oversampling, 2 power
   iterations) vs the full SVD on a 4096×4096 matrix of rank 64 plus noise: time and
   relative error against the Eckart–Young optimum. Once per run (not per fold).
3. An MLP 784-1024-1024-1024-10 (cached baseline per fold) factorised to rank 64
   (data-aware, the 10-way output layer stays dense because rank 64 would not shrink
   it), fine-tuned, and timed against itself at batch 64 and batch 1 in one process.
Everything runs on one thread (the machine's 2 cores are shared by several jobs).
"""
from __future__ import annotations

import copy
import statistics
import time

import torch

import netshrink as ns
from netshrink_bench.results import fmt_mean_std, mean_std
from netshrink.functional.sketch import randomized_svd
from netshrink.measure.counts import param_counts
from netshrink.measure.flops import count_flops
from netshrink.measure.latency import compare_latency
from netshrink.measure.plots import line_plot
from netshrink.train.loop import predict

# label -> low_rank fields. The 10-way output layer (0.4 % of the weights) stays dense:
# at these ratios its rank would fall below the number of classes.
_KEEP = {"targets": {"exclude": ["fc3"]}, "samples": 4000}
VARIANTS = {
    "plain SVD": {"mode": "ratio", **_KEEP},
    "data-aware SVD": {"mode": "ratio", "data_aware": True, **_KEEP},
    "global budget, plain": {"mode": "budget", **_KEEP},
    "global budget, data-aware": {"mode": "budget", "data_aware": True, **_KEEP},
}


def _budgets(quick: bool) -> dict:
    return {"ratios": [0.25, 0.05] if quick else [0.5, 0.25, 0.1, 0.05, 0.02], "ft": 1 if quick else 3,
            "distill_ratio": 0.05, "n": 1024 if quick else 4096, "svd_rank": 64,
            "mlp_epochs": 2 if quick else 5, "mlp_ft": 1 if quick else 2, "full_svd_runs": 1}


def run(ctx) -> None:
    torch.set_num_threads(1)
    b = _budgets(ctx.quick)
    sections, plots = [], []
    s, p = _ratio_table(ctx, b)
    sections += s
    plots += p
    sections.append(_svd_timing(ctx, b))
    sections.append(_wide_mlp(ctx, b))
    notes = ("Parameter ratio = parameters of the factorised model / parameters of the baseline (biases "
             "included), measured on the model; storage ratio = baseline fp32 bytes / bytes of the file "
             "`ns.save` writes. Output error = ‖logits − baseline logits‖_F / ‖baseline logits‖_F on the test "
             "fold. Data-aware and plain SVD use the same per-layer ranks (mode = ratio), so they are compared "
             "at equal rank. Speedups: `compare_latency` (torch.utils.benchmark, median of interleaved rounds), "
             "one thread.")
    ctx.write_markdown("Low rank: LeNet-300-100, randomised SVD, a wide MLP", sections, plots=plots, notes=notes)


# -- 1. accuracy vs parameter ratio ------------------------------------------------

def _output_error(model, ref_logits, test) -> float:
    logits = predict(model, test)[0]
    return float((logits - ref_logits).norm() / ref_logits.norm())


def _ratio_table(ctx, b):
    res: dict = {}   # (variant, ratio, stage) -> {"acc": [], "err": [], "params": [], "storage": []}
    base_acc = []
    ft = ns.TrainConfig(epochs=b["ft"], lr=1e-3)
    for fold in ctx.folds:
        train, test = ns.zoo.data.load("mnist5k", fold)
        base = ns.zoo.baseline("lenet300_100", "mnist5k", fold, progress=False)
        base_acc.append(ns.evaluate(base, test))
        ref_logits = predict(base, test)[0]
        n_base = param_counts(base)[0]
        ctx.record(part="ratio", fold=fold, variant="baseline", accuracy=base_acc[-1], params=n_base)
        runs = [(v, r, False) for v in VARIANTS for r in b["ratios"]] + [("plain SVD", b["distill_ratio"], True)]
        for variant, ratio, with_kd in runs:
            net = copy.deepcopy(base)
            method = ns.create("low_rank", ratio=ratio, **VARIANTS[variant])
            t0 = time.time()
            method.prepare(net, ns.core.context.PrepareContext(data=train))
            secs = time.time() - t0
            params = param_counts(net)[0] / n_base
            if not with_kd:
                before = {"acc": ns.evaluate(net, test), "err": _output_error(net, ref_logits, test)}
                _add(res, (variant, ratio, "before"), before, params)
            if with_kd:   # fine-tune while distilling from the original model
                recipe = ns.Recipe.of(ns.create("distill", temperature=4.0, weight=0.9, label_weight=1 - 0.9), finetune=ft)
                ns.compress_(net, recipe, data=train, teacher=base, progress=False)
            else:         # what compress_ does after low_rank's prepare
                ns.fit(net, train, ft, progress=False)
            size = ns.save(net, ctx.dir / "_lowrank_tmp.nshr")
            after = {"acc": ns.evaluate(net, test), "err": _output_error(net, ref_logits, test),
                     "storage": 4 * n_base / size}
            stage = "after + distill" if with_kd else "after"
            _add(res, (variant, ratio, stage), after, params)
            ctx.record(part="ratio", fold=fold, variant=variant, ratio=ratio, ranks=method.ranks_,
                       param_ratio=params, distill=with_kd, prepare_seconds=secs,
                       **({} if with_kd else {f"{k}_before": v for k, v in before.items()}),
                       **{f"{k}_after": v for k, v in after.items()})
    (ctx.dir / "_lowrank_tmp.nshr").unlink(missing_ok=True)
    rows = [["baseline LeNet-300-100", "1.000", "", fmt_mean_std(base_acc), "", fmt_mean_std(base_acc), ""]]
    for variant in VARIANTS:
        for r in b["ratios"]:
            be, af = res[(variant, r, "before")], res[(variant, r, "after")]
            rows.append([variant, f"{mean_std(af['params'])[0]:.3f}", f"{mean_std(af['storage'])[0]:.1f}x",
                         fmt_mean_std(be["acc"]), fmt_mean_std(be["err"], scale=1, digits=3),
                         fmt_mean_std(af["acc"]), ""])
    kd = res[("plain SVD", b["distill_ratio"], "after + distill")]
    plain = res[("plain SVD", b["distill_ratio"], "after")]
    gain = mean_std([a - p for a, p in zip(kd["acc"], plain["acc"])])
    rows.append([f"plain SVD, fine-tuned with distill (T=4, alpha 0.9)", f"{mean_std(kd['params'])[0]:.3f}",
                 f"{mean_std(kd['storage'])[0]:.1f}x", "", "", fmt_mean_std(kd["acc"]),
                 f"{100 * gain[0]:+.2f} ± {100 * gain[1]:.2f} pp vs plain fine-tuning"])
    series, errors = {}, {}
    for variant in VARIANTS:
        for stage in ("before", "after"):
            key = f"{variant}, {stage} FT"
            xs = [mean_std(res[(variant, r, stage)]["params"])[0] for r in b["ratios"]]
            series[key] = (xs, [100 * mean_std(res[(variant, r, stage)]["acc"])[0] for r in b["ratios"]])
            errors[key] = [100 * mean_std(res[(variant, r, stage)]["acc"])[1] for r in b["ratios"]]
    line_plot(ctx.dir / "lowrank_lenet300.png", series, errors=errors, logx=True, xlabel="parameter ratio",
              ylabel="test accuracy (%)", title="LeNet-300-100 under low rank (mnist5k)",
              baseline=100 * mean_std(base_acc)[0])
    head = ["factors", "parameter ratio", "storage ratio", "accuracy before FT", "output error before FT",
            f"accuracy after {b['ft']} FT epochs", "note"]
    return [("LeNet-300-100 on mnist5k: accuracy vs parameter ratio (mean ± std over folds, %)", head, rows)], \
        ["lowrank_lenet300.png"]


def _add(res, key, values: dict, params: float) -> None:
    d = res.setdefault(key, {"acc": [], "err": [], "params": [], "storage": []})
    d["acc"].append(values["acc"])
    d["err"].append(values["err"])
    d["params"].append(params)
    if "storage" in values:
        d["storage"].append(values["storage"])


# -- 2. randomised SVD vs full SVD --------------------------------------------------

def _svd_timing(ctx, b):
    n, k = b["n"], b["svd_rank"]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, k, generator=g) @ torch.randn(k, n, generator=g) / k ** 0.5   # rank k, entries ~ N(0, 1)
    a += 0.5 * torch.randn(n, n, generator=g)                                        # plus noise
    # Errors in float64: the optimum from the (relatively accurate) top-k singular values,
    # ‖A − A_k‖² = ‖A‖² − Σ_{i≤k} σ_i², not from summing 4,000 float32 tail values.
    a64 = a.double()
    norm2 = float(a64.pow(2).sum())
    norm = norm2 ** 0.5
    full_t = []
    for _ in range(b["full_svd_runs"]):
        t0 = time.perf_counter()
        u, s, vh = torch.linalg.svd(a, full_matrices=False)
        full_t.append(time.perf_counter() - t0)
    optimum = max(norm2 - float(s[:k].double().pow(2).sum()), 0.0) ** 0.5 / norm   # Eckart–Young
    del u, vh
    rows = [["full SVD (torch.linalg.svd)", f"{statistics.median(full_t):.2f}", "1.0x", f"{optimum:.5f}", "1.0000"]]
    ctx.record(part="svd", solver="full", n=n, rank=k, seconds=full_t, rel_error=optimum)

    def rand(sketch):
        return lambda: randomized_svd(a, rank=k, oversample=10, power_iters=2, sketch=sketch,
                                      generator=torch.Generator().manual_seed(1))

    def lowrank():
        u, s, v = torch.svd_lowrank(a, q=k + 10, niter=2)
        return u[:, :k], s[:k], v[:, :k].T

    for label, fn in [("randomised, Gaussian sketch", rand("gaussian")),
                      ("randomised, CountSketch", rand("countsketch")),
                      ("torch.svd_lowrank (reference, same settings)", lowrank)]:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            u, s, vh = fn()
            times.append(time.perf_counter() - t0)
        err = float((a64 - (u * s).double() @ vh.double()).norm()) / norm
        t = statistics.median(times)
        rows.append([label, f"{t:.3f}", f"{statistics.median(full_t) / t:.1f}x", f"{err:.5f}",
                     f"{err / optimum:.4f}"])
        ctx.record(part="svd", solver=label, n=n, rank=k, seconds=times, rel_error=err, vs_optimum=err / optimum)
    return (f"Randomised SVD: {n}×{n} matrix of rank {k} plus Gaussian noise (σ = 0.5), rank {k}, "
            "10 oversampling, 2 power iterations, one thread",
            ["solver", "seconds (median)", "speedup vs full SVD", "relative error ‖A − Â‖/‖A‖",
             "error / optimum"], rows)


# -- 3. a wide MLP at rank 64: latency ----------------------------------------------

def _wide_mlp(ctx, b):
    hidden = [1024, 1024, 1024]
    rows_acc, rows_fact, sp64, sp1, params, flops = [], [], [], [], [], []
    for fold in ctx.folds:
        train, test = ns.zoo.data.load("mnist5k", fold)
        base = ns.zoo.baseline("mlp", "mnist5k", fold, hidden=hidden, progress=False,
                               config=ns.TrainConfig(epochs=b["mlp_epochs"], lr=1e-3))
        net = copy.deepcopy(base)
        method = ns.create("low_rank", mode="rank", rank=64, data_aware=True)
        method = ns.run_recipe(net, ns.Recipe.of(method, finetune=ns.TrainConfig(epochs=b["mlp_ft"], lr=1e-3)),
                               data=train, progress=False).methods[0]
        x64 = torch.stack([test[i][0] for i in range(64)])
        ms64, ref64 = compare_latency(net, base, x64, rounds=7)
        ms1, ref1 = compare_latency(net, base, x64[:1], rounds=7)
        rows_acc.append(ns.evaluate(base, test))
        rows_fact.append(ns.evaluate(net, test))
        sp64.append(ref64 / ms64)
        sp1.append(ref1 / ms1)
        params.append(param_counts(net)[0] / param_counts(base)[0])
        flops.append(count_flops(base, x64[:1])[1] / count_flops(net, x64[:1])[1])
        ctx.record(part="wide_mlp", fold=fold, ranks=method.ranks_, accuracy_base=rows_acc[-1],
                   accuracy_factorised=rows_fact[-1], ms_b64=ms64, ref_ms_b64=ref64, ms_b1=ms1, ref_ms_b1=ref1,
                   param_ratio=params[-1], flops_reduction=flops[-1])

    def speed(v):  # the median is robust to the load spikes of a shared machine; mean ± std beside it
        return f"{statistics.median(v):.2f}x (mean {mean_std(v)[0]:.2f} ± {mean_std(v)[1]:.2f})"

    rows = [["MLP 784-1024-1024-1024-10 (dense)", "1.000", "1.0x", fmt_mean_std(rows_acc), "1.00x", "1.00x"],
            [f"rank 64 (data-aware), {b['mlp_ft']} FT epochs", f"{mean_std(params)[0]:.3f}",
             f"{mean_std(flops)[0]:.1f}x", fmt_mean_std(rows_fact), speed(sp64), speed(sp1)]]
    return ("A 1024-wide MLP factorised to rank 64: measured latency speedup (median over folds, "
            "mean ± std beside it)",
            ["model", "parameter ratio", "FLOPs reduction", "accuracy", "speedup batch 64", "speedup batch 1"], rows)
