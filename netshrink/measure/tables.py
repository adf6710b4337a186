"""Readable tables for the terminal (rich) and for Markdown files."""
from __future__ import annotations

from rich.console import Console
from rich.table import Table


def print_table(title: str, headers: list[str], rows: list[list], console: Console | None = None) -> None:
    t = Table(title=title, title_justify="left")
    for i, h in enumerate(headers):
        # "fold": in a narrow terminal a long cell (a tensor's full name, an encoding) wraps
        # onto more lines instead of being cut to "encoder.…", which names nothing
        t.add_column(h, justify="left" if i == 0 else "right", overflow="fold")
    for r in rows:
        t.add_row(*[str(c) for c in r])
    (console or Console()).print(t)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def comparison_rows(before, after) -> list[list]:
    """Rows 'figure | before | after' for two Reports."""
    def pct(x):
        return "" if x is None else f"{100 * x:.2f} %"

    def value(r):   # accuracy in %, MSE as a number
        return r.format_value(r.task_value) if r.task_value is not None else ""

    rows = [[after.metric, value(before), value(after)],
            ["parameters", f"{before.params:,}", f"{after.params:,}"],
            ["non-zeros", f"{before.nonzeros:,}", f"{after.nonzeros:,}"],
            ["sparsity", f"{100 * before.sparsity:.1f} %", f"{100 * after.sparsity:.1f} %"]]
    if before.file_bytes and after.file_bytes:
        rows += [["file bytes", f"{before.file_bytes:,}", f"{after.file_bytes:,}"],
                 ["storage ratio (dense fp32 / file)", f"{before.storage_ratio:.2f}x", f"{after.storage_ratio:.2f}x"]]
    rows += [["FLOPs dense", f"{before.flops_dense:,}", f"{after.flops_dense:,}"],
             ["FLOPs effective", f"{before.flops_effective:,}", f"{after.flops_effective:,}"]]
    for b in after.latency_ms:
        ref = after.reference_latency_ms.get(b, before.latency_ms.get(b))
        rows.append([f"latency {b} (ms)", f"{ref:.3f}" if ref else "", f"{after.latency_ms[b]:.3f}"])
        if b in after.speedup:
            rows.append([f"speedup {b}", "1.00x", f"{after.speedup[b]:.2f}x"])
    for b in after.onnx_latency_ms:
        ref = after.onnx_reference_latency_ms.get(b)
        rows.append([f"ONNX Runtime latency {b} (ms)", f"{ref:.3f}" if ref else "", f"{after.onnx_latency_ms[b]:.3f}"])
        if b in after.onnx_speedup:
            rows.append([f"ONNX Runtime speedup {b}", "1.00x", f"{after.onnx_speedup[b]:.2f}x"])
    return rows
