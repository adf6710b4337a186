"""`netshrink bench distill`: does a small student learn more from a teacher than from
the labels alone? (Hinton et al. 2015; Ba & Caruana 2014)

Per fold of mnist5k: the teacher is the cached LeNet-5 baseline (431,080 parameters).
Two MLP students: 784-30-10 (23,860 parameters, 18x fewer; the same network as
`derive_student(lenet300_100, width=0.1, drop_layers=1)`) and 784-100-10 (79,510, 5.4x
fewer). Every student of a size starts from the same initial weights (seeded by the
fold) and gets the same budget (`epochs` of Adam, lr 3e-3, cosine, batch 64: long
enough that the label-trained students overfit their 4,000 images); only the loss
differs:
- labels only: cross-entropy;
- distill T: w·T²·KL(soft teacher ‖ soft student) + (1 − w)·CE, w = 0.9 (Hinton's alpha),
  for T in {2, 4, 8}, all reported. The headline T of each student is chosen
  beforehand on a validation split (10 % of fold 0's training images, students trained
  on the other 90 %), never on a test fold;
- mimic: Ba & Caruana's L2 regression on the teacher's logits (no labels).
The teacher's logits on the training images are computed once per fold and looked up
(`_LogitCache`), so each distilled student costs about what a label-trained one does.
Runs on one thread (the machine's 2 cores are shared). (A first run with the
LeNet-300-100 teacher, only 0.9 pp better than the 30-unit student, lost 1 pp on fold
0 and was stopped.)
"""
from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import Subset

import netshrink as ns
from netshrink_bench.results import fmt_mean_std, mean_std
from netshrink_bench.table import Col, first, group, render, stat
from netshrink.measure.counts import param_counts
from netshrink.measure.plots import line_plot

TEMPERATURES = [2.0, 4.0, 8.0]
TEACHER = "lenet5"
STUDENTS = {"784-30-10": [30], "784-100-10": [100]}
ALPHA = 0.9


def _budgets(quick: bool) -> dict:
    return {"epochs": 2 if quick else 30, "lr": 3e-3, "temperatures": [2.0, 8.0] if quick else TEMPERATURES}


def _student(hidden: list[int], fold: int):
    torch.manual_seed(1000 + fold)            # the same initial student for every loss
    return ns.zoo.models.create("mlp", in_features=784, hidden=hidden, num_classes=10)


class _LogitCache(nn.Module):
    """The teacher with its logits on the training images computed once (one batched
    pass, eval mode) and looked up by the bytes of each input row; an input it has not
    seen goes through the teacher. Same function, ~40x less teacher work per student."""

    def __init__(self, teacher: nn.Module, data):
        super().__init__()
        self.teacher = teacher.eval()
        xs = torch.stack([data[i][0] for i in range(len(data))])
        with torch.no_grad():
            logits = torch.cat([teacher(xs[i:i + 500]) for i in range(0, len(xs), 500)])
        self.table = {x.numpy().tobytes(): z for x, z in zip(xs, logits)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = [self.table.get(r.numpy().tobytes()) for r in x.detach()]
        if any(z is None for z in rows):
            return self.teacher(x)
        return torch.stack(rows)


def _configs(temps):
    yield "labels only", None, None
    for t in temps:
        yield f"distill T={t:g}", "distill", {"temperature": t, "weight": ALPHA, "label_weight": 1 - ALPHA}
    yield "mimic (logits L2)", "mimic", {"weight": 1.0, "label_weight": 0.0}


def run(ctx) -> None:
    torch.set_num_threads(1)
    b = _budgets(ctx.quick)
    cfg = ns.TrainConfig(epochs=b["epochs"], lr=b["lr"])
    chosen = {name: _select_temperature(ctx, b, cfg, name) for name in STUDENTS}
    acc: dict = {}      # (student, label) -> accuracies over folds
    agree: dict = {}
    teacher_acc, n_teacher, n_student = [], 0, {}
    for fold in ctx.folds:
        train, test = ns.zoo.data.load("mnist5k", fold)
        teacher = ns.zoo.baseline(TEACHER, "mnist5k", fold, progress=False)
        teacher_acc.append(ns.evaluate(teacher, test))
        n_teacher = param_counts(teacher)[0]
        cached = _LogitCache(teacher, train)
        ctx.record(part="test", fold=fold, config="teacher LeNet-5", accuracy=teacher_acc[-1], params=n_teacher)
        for name, hidden in STUDENTS.items():
            for label, method, params in _configs(b["temperatures"]):
                student = _student(hidden, fold)
                n_student[name] = param_counts(student)[0]
                t0 = time.time()
                _train_student(student, method, params, train, cached, cfg)
                a = ns.evaluate(student, test)
                g = ns.evaluate(student, test, reference=teacher)
                acc.setdefault((name, label), []).append(a)
                agree.setdefault((name, label), []).append(g)
                ctx.record(part="test", fold=fold, student=name, config=label, method=method or "labels",
                           params=params or {}, accuracy=a, agreement_with_teacher=g,
                           student_params=n_student[name], epochs=cfg.epochs, seconds=time.time() - t0)
                ctx.log(f"fold {fold} {name} {label}: {100 * a:.2f} %")
    _report(ctx, b, acc, agree, teacher_acc, n_student, n_teacher, chosen)


def _train_student(student, method, params, data, teacher, cfg) -> None:
    if method is None:
        ns.fit(student, data, cfg, progress=False)
    else:
        recipe = ns.Recipe.of(ns.create(method, **params), finetune=cfg)
        ns.compress_(student, recipe, data=data, teacher=teacher, progress=False)


def _select_temperature(ctx, b, cfg, name: str) -> float:
    """T with the best validation accuracy: fold 0's training images split 90 / 10."""
    train, _ = ns.zoo.data.load("mnist5k", 0)
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(0)).tolist()
    cut = int(0.9 * len(train))
    fit_part, val = Subset(train, perm[:cut]), Subset(train, perm[cut:])
    teacher = _LogitCache(ns.zoo.baseline(TEACHER, "mnist5k", 0, progress=False), fit_part)
    best, best_acc = None, -1.0
    for t in b["temperatures"]:
        student = _student(STUDENTS[name], 0)
        _train_student(student, "distill", {"temperature": t, "weight": ALPHA, "label_weight": 1 - ALPHA}, fit_part, teacher, cfg)
        a = ns.evaluate(student, val)
        ctx.record(part="select", fold=0, student=name, temperature=t, validation_accuracy=a)
        ctx.log(f"{name} validation T={t:g}: {100 * a:.2f} %")
        if a > best_acc:
            best, best_acc = t, a
    return best


def _paired(rows: list, rs: list) -> list[float]:
    """Per-fold accuracy gains of the group `rs` over the same student trained on labels only."""
    base = {r["fold"]: r["accuracy"] for r in rows
            if r.get("student") == rs[0]["student"] and r["config"] == "labels only"}
    return [r["accuracy"] - base[r["fold"]] for r in rs]


def _cols(rows: list, chosen: dict) -> list[Col]:
    """The table's columns; a student's row of the temperature chosen on validation is bold."""
    def head(r):
        return r["config"] == f"distill T={chosen[r['student']]:g}"

    def label(rs):
        r = rs[0]
        text = f"{r['student']}, {r['config']}" + (" (T chosen on validation)" if head(r) else "")
        return f"**{text}**" if head(r) else text

    def gain(rs):
        if rs[0]["config"] == "labels only":
            return ""
        gm, gs = mean_std(_paired(rows, rs))
        return f"{100 * gm:+.2f} ± {100 * gs:.2f}"

    return [Col("student / loss", label), Col("params", first("student_params", "{:,}")),
            Col("accuracy", stat("accuracy")), Col("gain vs labels only (pp)", gain),
            Col("wins", lambda rs: "" if rs[0]["config"] == "labels only"
                else f"{sum(g > 0 for g in _paired(rows, rs))}/{len(rs)}"),
            Col("agreement with teacher", stat("agreement_with_teacher"))]


def _report(ctx, b, acc, agree, teacher_acc, n_student, n_teacher, chosen) -> None:
    rows = [r for r in ctx.rows if r.get("part") == "test"]
    cols = _cols(rows, chosen)
    teacher = [["teacher: LeNet-5 (cached baseline)", f"{n_teacher:,}", fmt_mean_std(teacher_acc), "", "", ""]]
    table = teacher + render(cols, group(rows, "student", "config", where=lambda r: "student" in r))[1]
    series, errors, claims = {}, {}, []
    temps = list(b["temperatures"])
    for name in STUDENTS:
        base = acc[(name, "labels only")]
        head = f"distill T={chosen[name]:g}"
        gm, gs = mean_std([a - l for a, l in zip(acc[(name, head)], base)])
        claims.append(f"{name}: T = {chosen[name]:g} (chosen on validation) gives {100 * gm:+.2f} ± {100 * gs:.2f} pp "
                      "over labels only")
        series[f"student {name}, distill"] = (temps, [100 * mean_std(acc[(name, f'distill T={t:g}')])[0] for t in temps])
        errors[f"student {name}, distill"] = [100 * mean_std(acc[(name, f"distill T={t:g}")])[1] for t in temps]
        series[f"student {name}, labels only"] = (temps, [100 * mean_std(base)[0]] * len(temps))
    line_plot(ctx.dir / "distill_temperature.png", series, errors=errors, xlabel="temperature T", logx=True,
              ylabel="student test accuracy (%)", title="MLP students of LeNet-5 vs temperature (mnist5k)",
              baseline=100 * mean_std(teacher_acc)[0])
    notes = (f"Teacher: the cached LeNet-5 baseline of each fold ({n_teacher:,} parameters). Same initial weights "
             f"and the same budget ({b['epochs']} epochs, Adam lr {b['lr']:g}, cosine, batch 64) for every row of a "
             "student; only the loss differs (distill: alpha = 0.9). Gain = paired per-fold difference to *labels "
             "only* (percentage points, mean ± std); wins = folds where it is better. T was chosen per student on a "
             "validation split (10 % of fold 0's training images). The plot's dashed line is the teacher. "
             + "; ".join(claims) + ".")
    ctx.write_markdown("Distillation: students vs the same students trained on labels alone",
                       [("mnist5k, accuracy (mean ± std over folds, %)",
                         [c.header for c in cols], table)],
                       plots=["distill_temperature.png"], notes=notes)
