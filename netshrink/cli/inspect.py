"""`netshrink inspect FILE`: what a .nshr file stores, tensor by tensor."""
from __future__ import annotations

from pathlib import Path

import typer

from netshrink.cli.common import console
from netshrink.codec import inspect_archive, read_archive
from netshrink.errors import NetshrinkError
from netshrink.measure.tables import print_table


def inspect(file: str = typer.Argument(..., help=".nshr file")):
    """Per tensor: encoding, bits per weight and bytes; totals against dense fp32; every
    entropy-coded stream against its empirical Shannon bound."""
    if not Path(file).is_file():
        raise NetshrinkError(f"{file}: no such file")
    header, _ = read_archive(file)
    rows = inspect_archive(file)
    tensors = [r for r in rows if r["name"] != "(total)"]
    total = next((r for r in rows if r["name"] == "(total)"), None)
    base = _base_of(header)
    table = [[r["name"], "x".join(map(str, r["shape"])) or "scalar", r["dtype"], r["encoding"], f"{r['bytes']:,}",
              f"{r['bits_per_weight']:.2f}", f"{r['ratio']:.1f}x"] for r in tensors]
    if total:
        table.append(["total (+ header %s B)" % f"{total.get('header_bytes', 0):,}", "", "", "",
                      f"{total['bytes']:,}", f"{total['bits_per_weight']:.2f}", f"{total['ratio']:.1f}x"])
    print_table(f"{file}: model {base}, {len(header.get('edits', []))} architecture edits, "
                f"{Path(file).stat().st_size:,} bytes", ["tensor", "shape", "dtype", "encoding", "bytes",
                                                         "bits/weight", "vs fp32"], table, console)
    coded = [(r["name"], st) for r in tensors for st in r.get("streams", []) if st["coder"] in ("huffman", "ans")]
    if coded:
        print_table("entropy-coded streams vs their empirical (order-0) Shannon bound",
                    ["stream", "coder", "symbols", "bytes", "Shannon bound", "over bound"],
                    [[f"{n}:{st['stream']}", st["coder"], f"{st['symbols']:,}", f"{st['bytes']:,}",
                      f"{st['shannon_bytes']:,.0f}",
                      f"{100 * (st['bytes'] / st['shannon_bytes'] - 1):+.2f} %" if st["shannon_bytes"] else ""]
                     for n, st in coded], console)


def _base_of(header: dict) -> str:
    """What the file is rebuilt from: a zoo factory, a transformers config, or a user's base."""
    if "factory" in header:
        return header["factory"].get("name")
    if "transformers" in header:
        return f"{header['transformers'].get('class')} (transformers config)"
    if "user" in header:
        return f"{header['user'].get('class')} (your own model: load with base=...)"
    return "?"
