"""`netshrink bench pruning`: the pruning family on mnist5k, the lottery-ticket
contrast, early-bird tickets, a sparse 2-layer LSTM, and the CSR runtime's speed.

Budgets (per fold; `--quick`: fold 0, fewer ratios, shorter budgets):
- LeNet-300-100: every method fine-tunes 2 epochs after pruning its cached baseline
  (gradual prunes during those epochs); lottery (LR rewinding, Renda et al.) trains 2
  epochs per round, 20 % of the weights per round (10 % of the output layer), and is
  read at the first round at or past each ratio (its exact sparsity is listed).
- LeNet-5: one epoch on a quarter of the training fold (1,000 images) per phase / round,
  lottery rounds prune 40 % (a larger rate than the paper's, to fit the time budget).
- Lottery contrast (Frankle & Carbin's setting): every round trains with the dense
  baseline's own budget (20 epochs, Adam lr 1e-3, cosine), prunes 20 % of each hidden
  layer and 10 % of the output layer, to 95 % sparsity; run twice, rewinding to theta_0
  (Frankle & Carbin) and to theta_k, k = 1 epoch = 63 steps, ~5 % of training (Frankle
  et al. 2020; each round then trains the remaining T - k steps from step k of the
  schedule). On a validation split of fold 0 (10 % of its training part) both matched
  the dense network at 95 % (within the split's noise). The control: the same masks on
  fresh random weights, trained all 20 epochs, at the rounds reported. "dense from
  theta_0, same budget" retrains the dense net from the same init with the same budget.
- Early-bird: searched for up to 20 epochs, then the ticket trains 20 epochs.
- LSTM (2 x 128 on seqmnist): gradual magnitude (Zhu & Gupta's cubic ramp, every 10
  steps) on both layers' input and recurrent weights (Narang et al.), 30 epochs from the
  cached baseline at its lr 2e-3 with cosine decay; the ramp ends at half the run and the
  second half trains with the masks fixed at the decaying lr. Chosen on a validation split
  of fold 0's training part (10 %; 20 epochs ending at 50 % or 75 %, lr 1e-3, 30 epochs
  were tried), never on the test split.
Everything runs on one thread (the machine's 2 cores are shared; two threads under
contention are far slower); latency ratios are measured in one process.
"""
from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import Subset

import netshrink as ns
from netshrink_bench.results import fmt_mean_std, mean_std
from netshrink_bench.table import Col, first, mean, section, stat
from netshrink.core.reparam import attach, bake_all, find
from netshrink.core.targets import Site
from netshrink.measure.latency import compare_latency
from netshrink.measure.plots import line_plot
from netshrink.methods.lottery import fresh_init
from netshrink.reparams.mask import Mask
from netshrink.runtime.sparse_linear import SparseLinear
from netshrink.runtime.sparsify import sparsify_
from netshrink.train.loop import steps_per_epoch
from netshrink.zoo.baseline import BASELINE_CONFIGS

# The sparse LSTM's budget, chosen on a validation split of fold 0's training part
# (10 %, never the test split): see the module docstring.
LSTM_EPOCHS, LSTM_LR, LSTM_END = 30, 2e-3, 0.5

METHODS = ["random", "magnitude (layer)", "magnitude (global)", "gradual", "lottery (LR rewind)", "obd"]


def _budgets(quick: bool) -> dict:
    return {"levels": [0.9, 0.98] if quick else [0.5, 0.8, 0.9, 0.95, 0.98, 0.99],
            "ft300": 1 if quick else 2, "ft5_subset": 1000,
            # the lottery contrast trains every round with the dense baseline's own budget
            "contrast": ns.TrainConfig(epochs=2) if quick else BASELINE_CONFIGS["lenet300_100"],
            "contrast_target": 0.9 if quick else 0.95,
            # rewind points: theta_0 (Frankle & Carbin) and theta_k after 1 epoch (Frankle et al. 2020)
            "contrast_rewinds": [("init", 0), ("step", 1)],
            "lstm": {"epochs": 2 if quick else LSTM_EPOCHS, "lr": LSTM_LR, "end": LSTM_END},
            "eb_max": 8 if quick else 20}


def _sparsity(model: nn.Module, targets=None) -> float:
    """Sparsity of the prunable weights (through SparseLinear too)."""
    ws = [s.tensor.detach() for s in ns.select(model, ns.Targets.from_value(targets))]
    ws += [m.dense_weight() for m in model.modules() if isinstance(m, SparseLinear)]
    return 1 - sum(int((w != 0).sum()) for w in ws) / sum(w.numel() for w in ws)


def _method(label: str, s: float, model_name: str) -> ns.Method:
    common = {"sparsity": s, "runtime": "dense"}   # speed is measured separately below
    if label == "random":
        return ns.create("random", **common)
    if label == "magnitude (layer)":
        return ns.create("magnitude", **common)
    if label == "magnitude (global)":
        return ns.create("magnitude", scope="global", max_sparsity=0.99, **common)
    if label == "gradual":
        return ns.create("gradual_magnitude", frequency=5, **common)
    if label == "obd":
        return ns.create("obd", samples=256, **common)
    raise KeyError(label)


def _table_runs(ctx, model_name: str, fold: int, train, test, cfg: ns.TrainConfig, base, levels, lottery_rate):
    """One fold of the accuracy-vs-sparsity table of `model_name`."""
    base_acc = ns.evaluate(base, test)
    ctx.record(part="table", model=model_name, fold=fold, method="baseline", sparsity=0.0, accuracy=base_acc)
    for label in METHODS[:4] + METHODS[5:]:
        for s in levels:
            net = _copy(base)
            t = time.time()
            ns.compress_(net, ns.Recipe.of(_method(label, s, model_name), finetune=cfg), data=train, progress=False)
            ctx.record(part="table", model=model_name, fold=fold, method=label, sparsity=s,
                       actual_sparsity=_sparsity(net), accuracy=ns.evaluate(net, test),
                       baseline_accuracy=base_acc, seconds=time.time() - t)
    # lottery: one iterative run, read at every round
    net = _copy(base)
    method = ns.create("lottery", sparsity=max(levels), rate=lottery_rate, output_rate=lottery_rate / 2,
                       rewind="lr", runtime="dense")
    rounds = []
    t = time.time()
    ns.compress_(net, ns.Recipe.of(method, finetune=cfg), data=train, progress=False,
                 extras={"on_round": lambda r, m, sp: rounds.append((r, sp, ns.evaluate(m, test)))})
    for s in levels:
        r, sp, acc = next(x for x in rounds if x[1] >= s - 1e-6)
        ctx.record(part="table", model=model_name, fold=fold, method=METHODS[4], sparsity=s, actual_sparsity=sp,
                   round=r, accuracy=acc, baseline_accuracy=base_acc, seconds=time.time() - t)


def _copy(model: nn.Module) -> nn.Module:
    f = ns.zoo.models.factory_of(model)
    net = ns.zoo.models.create(f["name"], **f["kwargs"])
    net.load_state_dict(model.state_dict())
    return net


def _masked_retrain(model_like: nn.Module, masks: dict, seed: int, train, cfg) -> nn.Module:
    """Frankle & Carbin's control: the ticket's masks on fresh random weights (`seed`)."""
    net = fresh_init(model_like, seed)
    for name, mask in masks.items():
        mod, _, p = name.rpartition(".")
        site = Site(mod, p, net.get_submodule(mod))
        with torch.no_grad():
            site.tensor.mul_(mask)
        attach(site, Mask(mask))
    ns.fit(net, train, cfg, progress=False)
    bake_all(net, Mask)
    return net


def _lottery_contrast(ctx, fold, train, test, base, B):
    """Frankle & Carbin's experiment, once per rewind point of B["contrast_rewinds"]
    (theta_0, and theta_k of Frankle et al. 2020); returns the theta_0 run's rounds."""
    cfg = B["contrast"]
    base_acc = ns.evaluate(base, test)
    # the dense network from the same theta_0 (the zoo's seed-0 init) with the same budget;
    # for the full budget this is the baseline's own recipe, so it should equal the baseline
    dense_same = fresh_init(base, 0)
    ns.fit(dense_same, train, cfg, progress=False)
    dense_acc = ns.evaluate(dense_same, test)
    same = all(torch.equal(a, b) for a, b in zip(dense_same.state_dict().values(), base.state_dict().values()))
    first = None
    for rewind, k_epochs in B["contrast_rewinds"]:
        k = round(k_epochs * steps_per_epoch(len(train), cfg.batch_size))
        method = ns.create("lottery", sparsity=B["contrast_target"], rate=0.2, output_rate=0.1, rewind=rewind,
                           rewind_step=k, runtime="dense")
        snaps = []

        def probe(r, m, sp):
            masks = {f"{n}.{p}".replace("parametrizations.", ""): rp.mask.clone()
                     for n, mod in m.named_modules() for p, rp in _masks_of(mod)}
            snaps.append((r, sp, ns.evaluate(m, test), masks))

        net = _copy(base)
        t = time.time()
        ns.compress_(net, ns.Recipe.of(method, finetune=cfg), data=train, progress=False, extras={"on_round": probe})
        seconds = time.time() - t
        label = "theta_0" if rewind == "init" else f"step {k} ({k_epochs:g} epoch)"
        picks = {len(snaps)} | {next(r for r, sp, *_ in snaps if sp >= lv) for lv in (0.8, 0.9) if lv < snaps[-1][1]}
        for r, sp, acc, masks in snaps:
            row = {"part": "contrast", "model": "lenet300_100", "fold": fold, "rewind": label, "rewind_step": k,
                   "round": r, "sparsity": sp, "ticket_accuracy": acc, "baseline_accuracy": base_acc,
                   "dense_same_budget": dense_acc, "dense_same_is_baseline": same, "epochs_per_round": cfg.epochs,
                   "lottery_seconds": seconds}
            if r in picks:   # the control: same masks, fresh random weights, all T steps
                row["reinit_accuracy"] = ns.evaluate(_masked_retrain(base, masks, 1, train, cfg), test)
            ctx.record(**row)
        first = first or snaps
    return first


def _masks_of(module: nn.Module):
    if not hasattr(module, "parametrizations"):
        return []
    return [(p, rp) for p in module.parametrizations.keys() for rp in module.parametrizations[p]
            if isinstance(rp, Mask)]


def _early_bird(ctx, fold, train, test, base, snaps, B):
    cfg = B["contrast"]
    target_round = next(x for x in snaps if x[1] >= 0.9 - 1e-6) if snaps[-1][1] >= 0.9 else snaps[-1]
    method = ns.create("early_bird", sparsity=0.9, epsilon=0.1, window=5, max_epochs=B["eb_max"], runtime="dense")
    net = _copy(base)
    t = time.time()
    method = ns.run_recipe(net, ns.Recipe.of(method, finetune=cfg), data=train, progress=False).methods[0]
    eb_epochs = method.epoch_ + cfg.epochs
    lottery_epochs = BASELINE_CONFIGS["lenet300_100"].epochs + target_round[0] * cfg.epochs
    ctx.record(part="early_bird", model="lenet300_100", fold=fold, epoch=method.epoch_, found=method.found_,
               distances=method.distances_, accuracy=ns.evaluate(net, test), sparsity=_sparsity(net),
               lottery_round=target_round[0], lottery_sparsity=target_round[1], lottery_accuracy=target_round[2],
               eb_epochs=eb_epochs, lottery_epochs=lottery_epochs, compute_saved=1 - eb_epochs / lottery_epochs,
               seconds=time.time() - t)


def _lstm(ctx, fold, B):
    train, test = ns.zoo.data.load("seqmnist", fold)
    base = ns.zoo.baseline("lstm", "seqmnist", fold, progress=False)
    base_acc = ns.evaluate(base, test)
    net = _copy(base)
    L = B["lstm"]
    cfg = ns.TrainConfig(epochs=L["epochs"], lr=L["lr"])   # cosine decay over the whole run
    end = int(L["end"] * steps_per_epoch(len(train), cfg.batch_size) * cfg.epochs)
    t = time.time()
    # Narang et al. prune the recurrent layers: input and recurrent weights of both LSTM
    # layers; the 1,290-parameter output Linear stays dense. The cubic ramp ends at
    # `end`; the rest of the run trains with the masks fixed at the decaying lr.
    method = ns.create("gradual_magnitude", sparsity=0.9, frequency=10, end_step=end, runtime="dense",
                       targets=["re:rnn\\.weight.*"])
    ns.compress_(net, ns.Recipe.of(method, finetune=cfg), data=train, progress=False)
    ctx.record(part="lstm", model="lstm (2 x 128)", fold=fold, sparsity=_sparsity(net, ["re:rnn\\.weight.*"]),
               all_weights_sparsity=_sparsity(net), accuracy=ns.evaluate(net, test),
               baseline_accuracy=base_acc, epochs=cfg.epochs, lr=cfg.lr, end_step=end, seconds=time.time() - t)


def _speed(ctx, B):
    """CSR runtime vs the uncompressed dense model, one process, 1 thread: a
    1024-1024-1024 MLP at 95 % (magnitude-pruned; its speed does not depend on the
    values, so it is not trained) and LeNet-300-100 at 98 % (global magnitude,
    fine-tuned), batch 64 and 1. "auto" is what finalize picks for batch 64."""
    torch.manual_seed(0)
    mlp_ref = ns.zoo.models.create("mlp", in_features=1024, hidden=[1024, 1024], num_classes=1024)
    mlp = _copy(mlp_ref)
    ns.compress_(mlp, ns.Recipe.of(ns.create("magnitude", sparsity=0.95, runtime="dense")), data=None, progress=False)
    train, test = ns.zoo.data.load("mnist5k", 0)
    base = ns.zoo.baseline("lenet300_100", "mnist5k", 0, progress=False)
    lenet = _copy(base)
    ns.compress_(lenet, ns.Recipe.of(ns.create("magnitude", sparsity=0.98, scope="global", max_sparsity=0.99,
                                               runtime="dense"), finetune=ns.TrainConfig(epochs=B["ft300"])),
                 data=train, progress=False)
    out = []
    for label, ref, masked, names, in_f in [
            ("MLP 1024-1024-1024, 95 %", mlp_ref, mlp, ["hidden.0", "hidden.1", "out"], 1024),
            ("LeNet-300-100, 98 %", base, lenet, ["fc1", "fc2", "fc3"], 784)]:
        auto = _copy(masked)
        chosen = sparsify_(auto, names, runtime="auto", batch_size=64)
        forced = _copy(masked)
        sparsify_(forced, names, runtime="sparse")
        for batch in (64, 1):
            x = torch.randn(batch, in_f)
            with torch.no_grad():
                err = float((forced(x) - masked(x)).abs().max())
            ms, ref_ms = compare_latency(forced, ref, x, rounds=7, min_run_time=0.3)
            ms_auto, ref2 = compare_latency(auto, ref, x, rounds=7, min_run_time=0.3)
            flops_d, flops_e = _flops(forced, x)
            row = dict(part="speed", model=label, batch=batch, sparsity=_sparsity(forced), dense_ms=ref_ms,
                       sparse_ms=ms, speedup=ref_ms / ms, auto_layers=sorted(chosen), auto_speedup=ref2 / ms_auto,
                       max_abs_diff=err, flops_dense=flops_d, flops_effective=flops_e,
                       file_bytes=_file_bytes(forced), dense_bytes=4 * sum(p.numel() for p in ref.parameters()),
                       accuracy=ns.evaluate(forced, test) if in_f == 784 else None,
                       dense_accuracy=ns.evaluate(ref, test) if in_f == 784 else None)
            ctx.record(**row)
            out.append(row)
    return out


def _file_bytes(model) -> int:
    import os
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        return ns.save(model, os.path.join(d, "m.nshr"))


def _flops(model, x):
    from netshrink.measure.flops import count_flops
    return count_flops(model, x)


def run(ctx) -> None:
    torch.set_num_threads(1)
    B = _budgets(ctx.quick)
    levels = B["levels"]
    speed = _speed(ctx, B)
    done = []
    for fold in ctx.folds:
        t0 = time.time()
        train, test = ns.zoo.data.load("mnist5k", fold)
        base = ns.zoo.baseline("lenet300_100", "mnist5k", fold, progress=False)
        _table_runs(ctx, "lenet300_100", fold, train, test, ns.TrainConfig(epochs=B["ft300"]), base, levels, 0.2)
        snaps = _lottery_contrast(ctx, fold, train, test, base, B)
        _early_bird(ctx, fold, train, test, base, snaps, B)
        base5 = ns.zoo.baseline("lenet5", "mnist5k", fold, progress=False)
        g = torch.Generator().manual_seed(fold)
        part = Subset(train, torch.randperm(len(train), generator=g)[:B["ft5_subset"]].tolist())
        _table_runs(ctx, "lenet5", fold, part, test, ns.TrainConfig(epochs=1), base5, levels, 0.4)
        _lstm(ctx, fold, B)
        done.append(fold)
        ctx.log(f"fold {fold} done in {time.time() - t0:.0f} s")
        _write(ctx, levels, speed, done)   # a run cut short still leaves its tables


def _rows(ctx, **match):
    return [r for r in ctx.rows if all(r.get(k) == v for k, v in match.items())]


CONTRAST_COLS = [   # one row per (rewind point, round), over folds
    Col("rewind to", first("rewind")), Col("round", first("round")), Col("sparsity", mean("sparsity", "{:.1f} %", scale=100)),
    Col("ticket acc.", stat("ticket_accuracy")), Col("reinit acc.", stat("reinit_accuracy")),
    Col("ticket − baseline (pp)", stat(lambda r: r["ticket_accuracy"] - r["baseline_accuracy"])),
    Col("ticket − reinit (pp)", stat(lambda r: r["ticket_accuracy"] - r["reinit_accuracy"])),
    Col("dense from theta_0, same budget", stat("dense_same_budget")),
    Col("baseline (20 epochs)", stat("baseline_accuracy")),
]
EARLY_BIRD_COLS = [   # one row per fold
    Col("fold", first("fold")), Col("drawn at epoch", first(lambda r: r["epoch"] if r["found"] else f"not found ({r['epoch']})")),
    Col("EB sparsity", first("sparsity", "{:.1f} %", scale=100)), Col("EB acc.", first(lambda r: f"{100 * r['accuracy']:.2f}")),
    Col("lottery round", first("lottery_round")), Col("lottery sparsity", first("lottery_sparsity", "{:.1f} %", scale=100)),
    Col("lottery acc.", first(lambda r: f"{100 * r['lottery_accuracy']:.2f}")),
    Col("training epochs EB / lottery", first(lambda r: f"{r['eb_epochs']} / {r['lottery_epochs']}")),
    Col("compute saved", first("compute_saved", "{:.0f} %", scale=100)),
]
LSTM_COLS = [   # one row over folds
    Col("baseline acc.", stat("baseline_accuracy")), Col("90 % sparse acc.", stat("accuracy")),
    Col("drop (pp)", stat(lambda r: r["baseline_accuracy"] - r["accuracy"])),
    Col("sparsity (LSTM weights)", mean("sparsity", "{:.1f} %", scale=100)),
]
SPEED_COLS = [   # one row per (model, batch)
    Col("model", first("model")), Col("batch", first("batch")), Col("dense ms", first("dense_ms", "{:.3f}")),
    Col("CSR ms", first("sparse_ms", "{:.3f}")), Col("speedup", first("speedup", "{:.2f}x")),
    Col("auto picks (b64)", first(lambda r: ", ".join(r["auto_layers"]) or "none")),
    Col("auto speedup", first("auto_speedup", "{:.2f}x")),
    Col("FLOPs eff./dense", first(lambda r: f"{r['flops_effective'] / r['flops_dense']:.3f}")),
    Col("file bytes (dense fp32 bytes)", first(lambda r: f"{r['file_bytes']:,} ({r['dense_bytes']:,})")),
    Col("max abs Δ output", first("max_abs_diff", "{:.1e}")),
    Col("accuracy dense → CSR", first(lambda r: "" if r["accuracy"] is None
                                      else f"{100 * r['dense_accuracy']:.2f} → {100 * r['accuracy']:.2f}")),
]


def _write(ctx, levels, speed, done) -> None:
    sections, plots = [], []
    for model in ("lenet300_100", "lenet5"):
        base = [r["accuracy"] for r in _rows(ctx, part="table", model=model, method="baseline")]
        rows = [["baseline (dense)"] + [fmt_mean_std(base)] * len(levels)]
        series, errors = {}, {}
        for label in METHODS:
            accs = [[r["accuracy"] for r in _rows(ctx, part="table", model=model, method=label, sparsity=s)]
                    for s in levels]
            rows.append([label] + [fmt_mean_std(a) for a in accs])
            series[label] = ([100 * s for s in levels], [100 * mean_std(a)[0] for a in accs])
            errors[label] = [100 * mean_std(a)[1] for a in accs]
        lot = [[r["actual_sparsity"] for r in _rows(ctx, part="table", model=model, method=METHODS[4], sparsity=s)]
               for s in levels]
        rows.append(["(lottery's sparsity at that round)"] + [f"{100 * mean_std(a)[0]:.1f} %" for a in lot])
        rounds = [[r["round"] for r in _rows(ctx, part="table", model=model, method=METHODS[4], sparsity=s)]
                  for s in levels]
        rows.append(["(lottery rounds so far, each one fine-tuning budget; the others use 1)"]
                    + [f"{mean_std(a)[0]:.0f}" for a in rounds])
        sections.append((f"{model}: test accuracy (%) vs weight sparsity, mean ± std over {len(done)} fold(s)",
                         ["method"] + [f"{100 * s:g} %" for s in levels], rows))
        name = f"pruning_{model}.png"
        line_plot(ctx.dir / name, series, errors=errors, xlabel="sparsity of the pruned weights (%)",
                  ylabel="test accuracy (%)", title=f"{model} on mnist5k", baseline=100 * mean_std(base)[0])
        plots.append(name)
    # lottery contrast
    con = _rows(ctx, part="contrast")
    crow, series = [], {}
    for rw in dict.fromkeys(r["rewind"] for r in con):
        cr = [r for r in con if r["rewind"] == rw]
        picked = sorted({r["round"] for r in cr if "reinit_accuracy" in r})
        crow += [[r for r in cr if r["round"] == rd and "reinit_accuracy" in r] for rd in picked]
        allr = sorted({r["round"] for r in cr})
        series[f"ticket (rewind to {rw})"] = (
            [100 * mean_std([r["sparsity"] for r in cr if r["round"] == rd])[0] for rd in allr],
            [100 * mean_std([r["ticket_accuracy"] for r in cr if r["round"] == rd])[0] for rd in allr])
        series[f"random reinit, masks of rewind to {rw}"] = (
            [100 * mean_std([r["sparsity"] for r in cr if r["round"] == rd])[0] for rd in picked],
            [100 * mean_std([r["reinit_accuracy"] for r in cr if r["round"] == rd and "reinit_accuracy" in r])[0]
             for rd in picked])
    ep = sorted({r.get("epochs_per_round") for r in con})
    same = bool(con) and all(r.get("dense_same_is_baseline") for r in con)
    cols = [*CONTRAST_COLS[:7], Col(CONTRAST_COLS[7].header + (" (= the baseline: identical weights)" if same else ""),
                                    CONTRAST_COLS[7].cell), *CONTRAST_COLS[8:]]
    sections.append(section(f"Lottery tickets ({'/'.join(map(str, ep))} epochs per round, 20 % per round, 10 % of "
                            "the output layer) vs the same masks re-initialised at random (trained the same epochs), "
                            "LeNet-300-100", cols, crow))
    line_plot(ctx.dir / "pruning_lottery.png", series, xlabel="sparsity (%)", ylabel="test accuracy (%)",
              title="lottery ticket vs random re-initialisation (LeNet-300-100)",
              baseline=100 * mean_std([r["baseline_accuracy"] for r in con])[0])
    plots.append("pruning_lottery.png")
    eb = _rows(ctx, part="early_bird")
    sections.append(section("Early-bird tickets (target 90 %, ε = 0.1 over 5 epochs) vs the full lottery run, "
                            "LeNet-300-100", EARLY_BIRD_COLS, [[r] for r in eb]))
    ls = _rows(ctx, part="lstm")
    sections.append(section("2-layer LSTM (128 units) on seqmnist, gradual magnitude to 90 % (input + recurrent "
                            f"weights), {'/'.join(str(e) for e in sorted({r.get('epochs') for r in ls}))} epochs from "
                            "the baseline", LSTM_COLS, [ls]))
    sections.append(section("CSR sparse runtime vs dense (1 thread, same process, median of interleaved rounds)",
                            SPEED_COLS, [[r] for r in speed]))
    notes = (f"**Folds completed: {len(done)} of {len(ctx.folds)}** ({', '.join(map(str, done))}); every mean ± std "
             f"below is over these folds.\n\n") + (__doc__.split("\n\n", 1)[1] if "\n\n" in __doc__ else "") + (
        "\nAccuracy is on each fold's 1,000 test images; the baseline row is the same cached dense model every "
        "method starts from. Tables use `runtime = \"dense\"` (masks baked into dense weights); the speed "
        "section times the same kind of pruned model with the CSR runtime. The machine's 2 cores were shared "
        "with other jobs while this ran, so latency ratios are noisy: \"speedup\" and \"auto speedup\" time "
        "the same layers (when auto picks them all) in two separate comparisons, and their gap shows the noise.")
    ctx.write_markdown("Pruning: methods, lottery tickets, early-bird, sparse LSTM, CSR runtime", sections,
                       plots=plots, notes=notes)
