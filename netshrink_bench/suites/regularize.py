"""`netshrink bench regularize`: sparsity learned during training (issue 5).

Per fold of mnist5k (seqmnist for the LSTM), every method starts from the cached
baseline of that fold and fine-tunes with Adam (lr 1e-3, cosine, batch 64); the
baseline's accuracy is measured in the same run on the same test fold.

- variational dropout on LeNet-300-100 and LeNet-5: sparsity, non-zero ratio (beside
  the paper's 68x / 280x, which were measured on full MNIST), storage ratio of the
  saved file;
- L0 gates on LeNet-5 (conv filters, FC input neurons): the surviving architecture and
  the FLOPs that structured shrinking removes;
- group lasso and DropNeuron on LeNet-300-100: hidden units and input pixels removed;
- LassoNet on the 784 pixels: the path (features kept vs validation accuracy) and the
  test accuracy of the network restricted to the 50 best pixels;
- variational dropout on the 2-layer LSTM on sequential MNIST.

Counting rules. Sparsity = zero weights / weights of the targeted layers (biases not
counted). "Non-zero ratio" = targeted weights / non-zero targeted weights. Units
"removable" = zero rows / filters / hidden units, or zero columns of the next layer
(a dead unit with a bias is a constant, which the next layer's bias absorbs exactly).
FLOPs are multiply-adds x 2 of conv and linear layers (FlopCounterMode's rule) for the
architecture left after removing those units; nothing here is removed physically yet,
so these are the FLOPs structured shrinking *can* save, not a measured speed-up.
Runs on one thread (the machine's cores are shared).
"""
from __future__ import annotations

import copy
import os
import tempfile
import time

import torch

import netshrink as ns
from netshrink_bench.results import fmt_mean_std, mean_std, regenerate_index
from netshrink_bench.table import Col, count, first, section, stat
from netshrink_bench.table import render as render_cols
from netshrink.measure.flops import count_flops
from netshrink.measure.plots import line_plot
from netshrink.methods.lassonet import lassonet_path, plot_path, restrict, select_features
from netshrink.core.reparam import bake_all
from netshrink.zoo.baseline import BASELINE_CONFIGS

PAPER_VD = {"lenet300_100": "68x (1.92 % error)", "lenet5": "280x (0.75 % error)"}


def _budgets(quick: bool) -> dict:
    return {
        "vd_epochs": {"lenet300_100": 3 if quick else 15, "lenet5": 2 if quick else 30, "lstm": 1 if quick else 30},
        "ft_epochs": 1 if quick else 2,   # LeNet-5 (VD, L0): survivors fine-tuned, zeros kept
        "lstm_ft_epochs": 1 if quick else 6,   # the same after VD on the LSTM
        "l0_epochs": 2 if quick else 5,
        "group_epochs": 3 if quick else 10,
        "lassonet_multiplier": 1.2 if quick else 1.02,
        "lassonet_dense_epochs": 3 if quick else 50,
        "lassonet_path_folds": [0],               # in the fold loop
        "lassonet_late_folds": [1, 2, 3, 4],       # after every other experiment (see run)
        "lstm_folds": [0, 1, 2, 3, 4],
    }


# -- settings (chosen on a validation split: 10 % of fold 0's training data, never a test
# split; see the notes in the report) --------------------------------------------------------
VD = {"kl_weight": 0.2, "warmup": 0.3}
# Lobacheva et al.'s code initialises log sigma = -3 (log sigma^2 = -6) for the LSTM weights.
VD_LSTM = {"kl_weight": 0.5, "warmup": 0.3, "init_log_sigma2": -6.0}
# Louizos et al.'s per-layer lambdas (10, 0.5, 0.1, 10 for N = 60,000) scaled for N = 4,000
# and a 5-epoch fine-tune; gates learn 50x faster than the weights.
L0 = {"per_layer": {"conv1": 1.0, "conv2": 0.3, "fc1": 0.02, "fc2": 1.0}, "gate_lr_scale": 50.0, "drop_rate": 0.1}
# Proximal SGD (lr 0.05, momentum 0.9): the prox threshold is lr x lambda.
GROUP = {"group_lasso": {"lam": 3e-3}, "dropneuron": {"lam_output": 0.03, "lam_input": 0.03, "prox": True}}
GROUP_CFG = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9}
# LassoNet as the authors' package (M = 10, lambda x1.02 per point, warm starts, a dense
# phase with Adam lr 1e-3 first, lambda_start = the dense model's validation loss, every point
# early-stopped on the path's validation split once the validation objective has not fallen
# below 0.99 x its best for `patience` epochs), with a CPU budget: the path's SGD at lr 0.01
# (package: 1e-3), batch 256 (package: full batch), patience 3 / at most 10 epochs per point
# (package: 10 / 100), and lambda x1.3 on the dense stretch before the first feature leaves.
LASSONET = {"M": 10.0, "patience": 3, "dense_patience": 5, "tol": 0.99, "idle_multiplier": 1.3}
LASSONET_PATH = {"epochs": 10, "lr": 0.01, "optimizer": "sgd", "momentum": 0.9, "schedule": "constant", "batch_size": 256}
LASSONET_DENSE = {"optimizer": "adam", "lr": 1e-3}


def _sparsity(model) -> tuple[float, int, int]:
    ws = [s.tensor.detach() for s in ns.select(model)]
    total = sum(w.numel() for w in ws)
    nz = sum(int((w != 0).sum()) for w in ws)
    return 1 - nz / total, total, nz


def _file_bytes(model) -> int:
    with tempfile.TemporaryDirectory() as d:
        return ns.save(model, os.path.join(d, "m.nshr"))


def _compress(model, method, train, epochs, ft_epochs=0, **cfg):
    """`method` for `epochs`, then (ft_epochs > 0) a fine-tune of the survivors with every
    zero kept: magnitude pruning at sparsity 0 masks exactly the zeros (dense runtime).
    Returns (seconds, the run's fitted copy of `method`)."""
    t = time.time()
    cfg = {"lr": 1e-3, **cfg}
    steps = [ns.Step(method, finetune={"epochs": epochs})]
    if ft_epochs:
        steps.append(ns.Step(ns.create("magnitude", sparsity=0.0, runtime="dense"), finetune={"epochs": ft_epochs}))
    run = ns.run_recipe(model, ns.Recipe(steps=steps, finetune=ns.TrainConfig(epochs=epochs, **cfg)), data=train,
                        progress=False)
    return time.time() - t, run.methods[0]


# -- structure of the two LeNets: which units could go ----------------------------------
def _zero_rows(w):  # output units / filters with all-zero weights
    return (w.reshape(w.shape[0], -1) == 0).all(1)


def _zero_cols(w):  # input features / channels with no non-zero weight
    return (w.transpose(0, 1).reshape(w.shape[1], -1) == 0).all(1)


def mlp_units(model) -> dict:
    """LeNet-300-100: alive inputs / hidden units after removing dead ones."""
    w1, w2, w3 = (model.get_submodule(n).weight.detach() for n in ("fc1", "fc2", "fc3"))
    h1 = ~(_zero_rows(w1) | _zero_cols(w2))
    h2 = ~(_zero_rows(w2) | _zero_cols(w3))
    inputs = ~_zero_cols(w1)
    # a unit fed only by removed units is itself constant: propagate once
    h2 &= (w2[:, h1] != 0).any(1) | ~_zero_rows(w2)
    return {"inputs": int(inputs.sum()), "h1": int(h1.sum()), "h2": int(h2.sum()),
            "flops": 2 * (int(inputs.sum()) * int(h1.sum()) + int(h1.sum()) * int(h2.sum()) + int(h2.sum()) * 10)}


def lenet5_units(model) -> dict:
    """LeNet-5 (conv 20, conv 50, FC 800->500, FC 500->10): alive conv1 / conv2 filters,
    fc1 inputs and fc1 units, and the FLOPs of that architecture on a 28x28 image."""
    c1w, c2w, f1w, f2w = (model.get_submodule(n).weight.detach() for n in ("conv1", "conv2", "fc1", "fc2"))
    c1 = ~(_zero_rows(c1w) | _zero_cols(c2w))                      # (20,)
    f1_in = ~_zero_cols(f1w)                                       # (800,) = 50 channels x 16 positions
    c2 = ~_zero_rows(c2w) & f1_in.reshape(50, -1).any(1)           # (50,)
    f1_in &= c2.repeat_interleave(f1w.shape[1] // 50)
    h = ~(_zero_rows(f1w) | _zero_cols(f2w))                       # (500,)
    n1, n2, nin, nh = int(c1.sum()), int(c2.sum()), int(f1_in.sum()), int(h.sum())
    flops = 2 * (n1 * 1 * 25 * 24 * 24 + n2 * n1 * 25 * 8 * 8 + nin * nh + nh * 10)
    return {"conv1": n1, "conv2": n2, "fc1_in": nin, "fc1_out": nh, "flops": flops}


# -- the experiments -----------------------------------------------------------------------
def _vd(ctx, b, model_name, data, fold, base, train, test, base_acc):
    m = copy.deepcopy(base)
    meth = ns.create("variational_dropout", **(VD_LSTM if model_name == "lstm" else VD))
    secs, meth = _compress(m, meth, train, b["vd_epochs"]["lstm" if model_name == "lstm" else model_name],
                     ft_epochs={"lenet5": b["ft_epochs"], "lstm": b["lstm_ft_epochs"]}.get(model_name, 0))
    s, total, nz = _sparsity(m)
    row = dict(experiment="vd", model=model_name, data=data, fold=fold, baseline_acc=base_acc,
               acc=ns.evaluate(m, test), sparsity=s, weights=total, nonzeros=nz, nonzero_ratio=total / max(nz, 1),
               file_bytes=_file_bytes(m), dense_bytes=4 * sum(p.numel() for p in base.parameters()),
               layer_sparsity=meth.layer_sparsity_, seconds=secs)
    row["storage_ratio"] = row["dense_bytes"] / row["file_bytes"]
    ctx.record(**row)
    ctx.log(f"vd {model_name} fold {fold}: {100 * row['acc']:.2f} % (baseline {100 * base_acc:.2f}), "
            f"sparsity {100 * s:.2f} %")


def _l0(ctx, b, fold, base, train, test, base_acc, dense_flops):
    m = copy.deepcopy(base)
    meth = ns.create("l0", **L0)
    secs, meth = _compress(m, meth, train, b["l0_epochs"], ft_epochs=b["ft_epochs"])
    u = lenet5_units(m)
    row = dict(experiment="l0", model="lenet5", data="mnist5k", fold=fold, baseline_acc=base_acc,
               acc=ns.evaluate(m, test), **u, dense_flops=dense_flops, flops_removed=1 - u["flops"] / dense_flops,
               sparsity=_sparsity(m)[0], seconds=secs)
    ctx.record(**row)
    ctx.log(f"l0 fold {fold}: {100 * row['acc']:.2f} %, {u}")


def _group(ctx, b, fold, base, train, test, base_acc, dense_flops):
    for name, params in GROUP.items():
        m = copy.deepcopy(base)
        meth = ns.create(name, **params)
        secs, meth = _compress(m, meth, train, b["group_epochs"], **GROUP_CFG)
        u = mlp_units(m)
        row = dict(experiment="group", method=name, model="lenet300_100", data="mnist5k", fold=fold,
                   baseline_acc=base_acc, acc=ns.evaluate(m, test), **u, hidden_removed=400 - u["h1"] - u["h2"],
                   dense_flops=dense_flops, flops_removed=1 - u["flops"] / dense_flops, sparsity=_sparsity(m)[0],
                   seconds=secs)
        ctx.record(**row)
        ctx.log(f"{name} fold {fold}: {100 * row['acc']:.2f} %, {u}")


def _retrain(keep, train, seed):
    """LeNet-300-100 trained from a fresh initialisation on the `keep` pixels only, with
    the baseline's own recipe (as the paper retrains a network on the selected features)."""
    torch.manual_seed(seed)
    net = ns.zoo.models.create("lenet300_100")
    restrict(net, keep, inplace=True)
    ns.fit(net, train, BASELINE_CONFIGS["lenet300_100"], progress=False)
    bake_all(net)
    return net


def _lassonet(ctx, b, fold, base, train, test, base_acc, k=50):
    if fold not in b["lassonet_path_folds"] and not ctx.quick:
        return None
    t = time.time()
    n_val = len(train) // 10
    tr, val = torch.utils.data.random_split(train, [len(train) - n_val, n_val],
                                            generator=torch.Generator().manual_seed(fold))
    m = copy.deepcopy(base)
    cfg = ns.TrainConfig(**LASSONET_PATH)
    path = lassonet_path(m, tr, val, cfg=cfg, dense_cfg=cfg.replace(**LASSONET_DENSE), M=LASSONET["M"],
                         multiplier=b["lassonet_multiplier"], dense_epochs=b["lassonet_dense_epochs"],
                         patience=LASSONET["patience"], dense_patience=LASSONET["dense_patience"], tol=LASSONET["tol"],
                         idle_multiplier=LASSONET["idle_multiplier"], min_features=0)
    keep = select_features(path, k)
    small = _retrain(keep, train, seed=fold)
    # the naive reference: the k pixels of highest variance on the training images, same retraining
    x = torch.stack([train[i][0].flatten() for i in range(len(train))])          # (n, 784)
    by_var = torch.zeros(x.shape[1], dtype=torch.bool)
    by_var[torch.argsort(x.var(0), descending=True, stable=True)[:k]] = True
    ref = _retrain(by_var, train, seed=fold)
    row = dict(experiment="lassonet", model="lenet300_100", data="mnist5k", fold=fold, baseline_acc=base_acc,
               features=k, acc=ns.evaluate(small, test), variance_acc=ns.evaluate(ref, test), path_points=len(path),
               path_epochs=sum(p.epochs for p in path), path_last_features=path[-1].n_features,
               lam_first=path[0].lam, lam_last=path[-1].lam, selected=torch.nonzero(keep).flatten().tolist(),
               path=[[p.lam, p.n_features, p.accuracy, p.epochs] for p in path], seconds=time.time() - t)
    ctx.record(**row)
    ctx.log(f"lassonet fold {fold}: {100 * row['acc']:.2f} % with {k} pixels (variance {100 * row['variance_acc']:.2f}), "
            f"{len(path)} path points, {row['path_epochs']} epochs, {time.time() - t:.0f} s")
    return path


def run(ctx) -> None:
    torch.set_num_threads(1)
    b = _budgets(ctx.quick)
    paths = {}
    for fold in ctx.folds:
        train, test = ns.zoo.data.load("mnist5k", fold)
        mlp = ns.zoo.baseline("lenet300_100", "mnist5k", fold, progress=False)
        mlp_acc = ns.evaluate(mlp, test)
        mlp_flops = count_flops(mlp, test[0][0].unsqueeze(0))[0]
        _vd(ctx, b, "lenet300_100", "mnist5k", fold, mlp, train, test, mlp_acc)
        _group(ctx, b, fold, mlp, train, test, mlp_acc, mlp_flops)
        path = _lassonet(ctx, b, fold, mlp, train, test, mlp_acc)
        if path is not None:
            paths[fold] = path
        lenet = ns.zoo.baseline("lenet5", "mnist5k", fold, progress=False)
        lenet_acc = ns.evaluate(lenet, test)
        lenet_flops = count_flops(lenet, test[0][0].unsqueeze(0))[0]
        assert lenet5_units(lenet)["flops"] == lenet_flops, "the LeNet-5 FLOPs formula disagrees with FlopCounterMode"
        _vd(ctx, b, "lenet5", "mnist5k", fold, lenet, train, test, lenet_acc)
        _l0(ctx, b, fold, lenet, train, test, lenet_acc, lenet_flops)
        if fold in b["lstm_folds"] or ctx.quick:
            strain, stest = ns.zoo.data.load("seqmnist", fold)
            lstm = ns.zoo.baseline("lstm", "seqmnist", fold, progress=False)
            _vd(ctx, b, "lstm", "seqmnist", fold, lstm, strain, stest, ns.evaluate(lstm, stest))
        # The tables after every fold, each row saying over how many folds it averages,
        # so that a run cut short still leaves honest (partial) tables.
        _report(ctx, paths)
        if not ctx.quick:
            regenerate_index(ctx.out)
    # The LassoNet path is the slowest experiment: on the other folds it runs last, after
    # every other table is complete, each fold's row added as it finishes.
    for fold in ([] if ctx.quick else b["lassonet_late_folds"]):
        train, test = ns.zoo.data.load("mnist5k", fold)
        mlp = ns.zoo.baseline("lenet300_100", "mnist5k", fold, progress=False)
        paths[fold] = _lassonet(ctx, {**b, "lassonet_path_folds": [fold]}, fold, mlp, train, test, ns.evaluate(mlp, test))
        _report(ctx, paths)
        regenerate_index(ctx.out)


# -- the report ---------------------------------------------------------------------------
def render(out: str = "benchmarks", quick: bool = False) -> None:
    """Rewrite the tables and plot from the suite's JSON lines (no training): for a
    change of layout after a run. Every number comes from the recorded rows."""
    import json

    from netshrink_bench.results import BenchContext
    from netshrink.methods.lassonet import PathPoint

    torch.set_num_threads(1)  # as the run did (the header reports it)
    ctx = BenchContext(suite="regularize", quick=quick, out=out)
    lines = (ctx.dir / "regularize.jsonl").read_text().splitlines()
    ctx.rows = [json.loads(line) for line in lines if line.strip()]
    none = torch.zeros(0)
    paths = {r["fold"]: [PathPoint(p[0], p[1], p[2], none, none) for p in r["path"]]
             for r in ctx.rows if r.get("experiment") == "lassonet"}
    # keep the run's own wall-clock figure (from the header the run wrote)
    import re
    md = ctx.dir / "regularize.md"
    m = re.search(r"fold\(s\), ([0-9.]+) min", md.read_text()) if md.exists() else None
    if m:
        ctx.started = time.time() - 60 * float(m.group(1))
    _report(ctx, paths)
    if not quick:
        regenerate_index(out)


def _pp(rows):
    return fmt_mean_std([r["baseline_acc"] - r["acc"] for r in rows])


VD_MODELS = {"lenet300_100": ("mnist5k", 0.95), "lenet5": ("mnist5k", 0.98), "lstm": ("seqmnist", 0.90)}


def _ratio(key, digits):   # "m ± s x"
    def cell(rs):
        m, sd = mean_std([r[key] for r in rs])
        return f"{m:.{digits}f} ± {sd:.{digits}f}x"
    return cell


VD_COLS = [   # one row per model, over folds
    Col("model", first(lambda r: f"{r['model']} ({VD_MODELS[r['model']][0]})")), Col("folds", count()),
    Col("baseline", stat("baseline_acc")), Col("VD", stat("acc")), Col("drop (pp)", _pp),
    Col("sparsity (%)", stat("sparsity")), Col("target", first(lambda r: f"{100 * VD_MODELS[r['model']][1]:.0f} %")),
    Col("non-zero ratio", _ratio("nonzero_ratio", 0)),
    Col("paper (full MNIST)", first(lambda r: PAPER_VD.get(r["model"], "99.5 % sparse (text)"))),
    Col("storage ratio", _ratio("storage_ratio", 1)),
]
L0_FOLD_COLS = [   # one row per fold
    Col("fold", first("fold", "fold {}")),
    Col("architecture", first(lambda r: f"{r['conv1']}-{r['conv2']}-{r['fc1_in']}-{r['fc1_out']}")),
    Col("baseline", first("baseline_acc", "{:.2f}", scale=100)), Col("L0", first("acc", "{:.2f}", scale=100)),
    Col("drop (pp)", first(lambda r: f"{100 * (r['baseline_acc'] - r['acc']):.2f}")),
    Col("FLOPs removed", first("flops_removed", "{:.1f} %", scale=100)),
]
L0_MEAN_COLS = [   # the same columns, one row over folds
    Col("fold", lambda rs: "mean ± std"), Col("architecture", lambda rs: "paper: 20-25-45-462 (0.9 % error)"),
    Col("baseline", stat("baseline_acc")), Col("L0", stat("acc")), Col("drop (pp)", _pp),
    Col("FLOPs removed", stat("flops_removed", digits=1)),
]
GROUP_COLS = [   # one row per method, over folds
    Col("method", first("method")), Col("folds", count()), Col("baseline", stat("baseline_acc")),
    Col("accuracy", stat("acc")), Col("drop (pp)", _pp), Col("layer-1 units left", stat("h1", 1, 0)),
    Col("layer-2 units left", stat("h2", 1, 0)),
    Col("hidden removed (%)", stat(lambda r: r["hidden_removed"] / 400, digits=1)),
    Col("pixels left (of 784)", stat("inputs", 1, 0)), Col("FLOPs removed (%)", stat("flops_removed", digits=1)),
]
LASSONET_COLS = [   # one row over folds
    Col("", lambda rs: "LassoNet, 50 pixels"), Col("folds", count()), Col("baseline (784 pixels)", stat("baseline_acc")),
    Col("50 pixels", stat("acc")), Col("drop (pp)", _pp),
    Col("50 highest-variance pixels (reference)", stat("variance_acc")),
    Col("LassoNet - reference (pp)", stat(lambda r: r["acc"] - r["variance_acc"])),
    Col("path points", stat("path_points", 1, 0)), Col("path epochs", stat("path_epochs", 1, 0)),
    Col("lambda range", lambda rs: f"{min(r['lam_first'] for r in rs):.3g} - {max(r['lam_last'] for r in rs):.3g}"),
    Col("features left at the end", stat("path_last_features", 1, 0)),
]


def _report(ctx, paths) -> None:
    rows = ctx.rows
    sel = lambda **kw: [r for r in rows if all(r.get(k) == v for k, v in kw.items())]  # noqa: E731
    vd = [rs for rs in (sel(experiment="vd", model=m) for m in VD_MODELS) if rs]
    l0 = sel(experiment="l0")
    l0_rows = render_cols(L0_FOLD_COLS, [[r] for r in l0])[1] + (render_cols(L0_MEAN_COLS, [l0])[1] if l0 else [])
    groups = [rs for rs in (sel(experiment="group", method=name) for name in GROUP) if rs]
    ln = sel(experiment="lassonet")
    plots = []
    if paths:
        name = "regularize_lassonet_path.png"
        # The validation images come from the baseline's own training fold, so the path's
        # accuracies are optimistic; no test-set line is drawn beside them.
        series = {}
        for f, path in sorted(paths.items()):
            pts = [p for p in path if p.accuracy is not None and p.n_features > 0]
            series[f"fold {f} ({len(path)} points)"] = ([p.n_features for p in pts], [100 * p.accuracy for p in pts])
        line_plot(ctx.dir / name, series, xlabel="input features kept (log scale)", ylabel="validation accuracy (%)",
                  title="LassoNet paths, mnist5k pixels (held-out 10 % of each training fold)", logx=True)
        plots.append(name)
    sections = [
        section("Sparse variational dropout (accuracy %, drop in pp, mean ± std over folds)", VD_COLS, vd),
        ("L0 gates on LeNet-5: surviving conv1-conv2-fc1 inputs-fc1 units, FLOPs structured shrinking removes",
         [c.header for c in L0_FOLD_COLS], l0_rows),
        section("Group lasso and DropNeuron on LeNet-300-100 (hidden units of 300 + 100)", GROUP_COLS, groups),
        section("LassoNet feature selection (test accuracy of LeNet-300-100 retrained from scratch on the 50 best "
                "pixels)", LASSONET_COLS, [ln] if ln else []),
    ]
    b = _budgets(ctx.quick)
    lstm_n = len(sel(experiment="vd", model="lstm"))
    notes = (
        "Settings were chosen on a validation split, 10 % of fold 0's training data held out (baselines "
        "retrained on the other 90 % for the purpose), never on a test split; then fixed for the 5-fold run. "
        f"VD {VD} (kl_weight tempers the KL of the ELBO: mnist5k has 4,000 training images, not 60,000; "
        "on LeNet-5 kl_weight 1 was sparser but lost accuracy on the validation split), KL warm-up over 30 % of the steps; "
        f"LSTM {VD_LSTM} (log sigma^2 = -6 is the initialisation of Lobacheva et al.'s code; kl_weight 0.2 stayed "
        f"below 90 % sparsity on the validation split); L0 {L0}; {GROUP} with {GROUP_CFG} (these three were set "
        "earlier on fold 0 and only confirmed on the validation split). The trials and their validation figures: "
        "benchmarks/regularize-tuning.jsonl (script benchmarks/regularize_tuning.py). "
        f"Budgets (epochs): VD {b['vd_epochs']}, L0 {b['l0_epochs']}, group {b['group_epochs']}. "
        f"The LSTM runs on {lstm_n} fold(s). LeNet-5 runs (VD, L0) end with {b['ft_epochs']} epochs of fine-tuning "
        f"with every zero kept (a second recipe step, magnitude pruning at sparsity 0), the LSTM's VD with "
        f"{b['lstm_ft_epochs']}. "
        f"LassoNet: M = {LASSONET['M']:g}, lambda x{b['lassonet_multiplier']:g} per point (as the paper) from the dense "
        "model's validation loss (the authors' package's default start), warm starts, a dense phase first "
        f"({LASSONET_DENSE}, at most {b['lassonet_dense_epochs']} epochs, patience {LASSONET['dense_patience']}), then "
        f"every point trained until the validation objective (cross-entropy + lambda sum_j ||theta_j||) has not "
        f"fallen below {LASSONET['tol']} x its best for {LASSONET['patience']} epochs (at most "
        f"{LASSONET_PATH['epochs']}), with SGD {LASSONET_PATH} -- a CPU budget where the package uses lr 1e-3, full "
        f"batches, patience 10 and 100 epochs (these path settings were set for time after one coarse trial on the "
        f"validation split, not tuned); until a feature leaves after the first point (which drops the constant border "
        f"pixels), lambda grows x{LASSONET['idle_multiplier']:g} (those points all keep every other feature). The path's own "
        "validation accuracy swings widely from one point to the next once fewer than a few hundred pixels remain "
        "(the plot): its network is not stable at these lambdas with this optimiser; the selection is judged by the "
        "retrained 50-pixel networks below. The path runs until no feature is left, on "
        f"{len(ln)} fold(s) ({sorted(r['fold'] for r in ln)}; after fold 0 the paths run last, one fold after another, "
        "while the run's time allowed); it trains on 90 % of the training fold and is scored on the other 10 %, which the "
        "baseline it starts from has seen, so path accuracies are optimistic. The 50 pixels that leave the path last "
        "are then used by a LeNet-300-100 trained from a fresh initialisation with the baseline's own recipe "
        "(20 epochs, Adam) on the whole training fold, tested on the test fold; the reference takes the 50 pixels of "
        "highest variance and is trained the same way. "
        "The paper's ratios are on full MNIST trained for 200 epochs; ours fine-tune a cached "
        "baseline on 4,000 images. Storage ratio = dense fp32 bytes / bytes of the saved "
        "file. FLOPs removed are what structured shrinking (issue 7) can remove; the saved models still run "
        "dense layers, so no speed-up is claimed here. Tables are rewritten after every fold; the folds column says "
        "how many folds each row averages.")
    ctx.write_markdown("Regularising weights and neurons away (issue 5)", sections, plots=plots, notes=notes)
