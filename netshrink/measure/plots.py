"""Plots written by runs and benchmarks (matplotlib, Agg backend, PNG)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def line_plot(path, series: dict[str, tuple[list, list]], *, xlabel: str, ylabel: str, title: str,
              baseline: float | None = None, logx: bool = False, errors: dict | None = None) -> None:
    """series: label -> (xs, ys); errors: label -> ys' standard deviations."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for label, (xs, ys) in series.items():
        if errors and label in errors:
            ax.errorbar(xs, ys, yerr=errors[label], marker="o", ms=4, capsize=3, label=label)
        else:
            ax.plot(xs, ys, marker="o", ms=4, label=label)
    if baseline is not None:
        ax.axhline(baseline, color="grey", ls="--", lw=1, label="baseline")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
