"""What a search leaves for the user to keep, in a run folder:

    recipe.toml   the resolved recipe (per-layer `per_layer` maps of sparsity / bits) that
                  `netshrink compress` replays to the same model, headed by the command
    choices.md    the per-layer choices: sparsity, bits, codec bytes, share of the file
    points.json   every point tried (bytes, accuracy, drop, latency, time, choices)
    pareto.png    bytes (or latency) vs drop of the points tried, budget lines drawn
    model.nshr    the model of the chosen point
"""
from __future__ import annotations

import json
from pathlib import Path

from netshrink.artifact import save
from netshrink.errors import NetshrinkError
from netshrink.measure.plots import plt
from netshrink.measure.tables import markdown_table


def choices_rows(res) -> list[list]:
    p = res.best
    if p is None or not p.choices:
        return []
    numel = {t.name: t.numel for t in res.tables}
    rows = []
    for name, c in p.choices.items():
        b = p.layer_bytes.get(name, 0)
        rows.append([name, f"{numel.get(name, 0):,}", f"{100 * c.sparsity:g} %",
                     c.bits_label, f"{b:,}", f"{100 * b / max(p.bytes, 1):.1f} %"])
    return rows


CHOICE_HEADERS = ["layer", "weights", "sparsity", "bits", "bytes", "of file"]


def pareto_plot(res, path, title: str = "") -> None:
    lat = res.budget.bytes is None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for p in res.points:
        x = p.latency_ms if lat else p.bytes
        ax.scatter([x], [p.drop_pp], marker="*" if p is res.best else "o", s=90 if p is res.best else 40,
                   label=f"{p.label} ({'meets' if p.met else 'misses'} budget)")
    if lat:
        ax.axvline(res.budget.latency_ms, color="grey", ls=":", lw=1, label="latency budget")
    else:
        ax.axvline(res.budget.bytes, color="grey", ls=":", lw=1, label="size budget")
        ax.set_xscale("log")
    ax.axhline(res.budget.max_drop, color="red", ls="--", lw=1, label="max drop")
    ax.set_xlabel(f"latency at batch {res.budget.batch} (ms)" if lat else "saved file (bytes)")
    ax.set_ylabel(f"drop ({res.unit})" if res.unit != "pp" else "accuracy drop (pp)")
    ax.set_title(title or "netshrink auto: points tried")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(res, out, *, command: str = "", reproduce: str = "") -> None:
    """Files into the folder `out` (created; the caller decides about overwriting)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    p = res.best
    header = "\n".join(x for x in (command, f"reproduce: {reproduce}" if reproduce else "",
                                   f"result: {res.message}", f"search wall time {res.seconds:.0f} s") if x)
    if p is not None:
        (out / "recipe.toml").write_text(p.recipe.to_toml(header))
        if res.model is not None:
            try:
                save(res.model, out / "model.nshr")   # no meta: the file is the one whose bytes were verified
            except NetshrinkError:   # a user model without a zoo factory: recipe and tables still help
                pass
    (out / "points.json").write_text(json.dumps({
        "budget": {"bytes": res.budget.bytes, "latency_ms": res.budget.latency_ms, "batch": res.budget.batch,
                   "max_drop": res.budget.max_drop},
        "baseline_acc": res.baseline_acc, "dense_bytes": res.dense_bytes,
        "baseline_latency_ms": res.baseline_latency_ms, "met": res.met, "message": res.message,
        "seconds": res.seconds, "points": [q.row() for q in res.points]}, indent=2))
    (out / "choices.md").write_text(f"# per-layer choices\n\n{command}\n\n{res.message}\n\n"
                                    + markdown_table(CHOICE_HEADERS, choices_rows(res)) + "\n")
    pareto_plot(res, out / "pareto.png")
