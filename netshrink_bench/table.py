"""Report tables as column specs: a suite lists its columns, this renders them.

A table is a list of `Col(header, cell)`; `cell` maps one *group* of result rows (the
dicts a suite passed to `ctx.record`, e.g. every fold of one configuration) to the text
of that cell. The cell makers below cover what the suites print:

    COLS = [Col("method", first("method")), Col("acc %", stat("acc")),
            Col("drop pp", stat("drop_pp", scale=1)), Col("file bytes", mean("file_bytes", "{:,.0f}")),
            Col("folds", count())]
    section("Post-training quantization", COLS, group(rows, "method"))

`key` arguments are a row field name or a function of the row (a derived value).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from netshrink_bench.results import fmt_mean_std, mean_std

Row = dict
Key = str | Callable[[Row], Any]


@dataclass(frozen=True)
class Col:
    header: str
    cell: Callable[[list[Row]], Any]   # a group of rows -> the cell


def _get(key: Key) -> Callable[[Row], Any]:
    return key if callable(key) else (lambda r: r[key])


def stat(key: Key, scale: float = 100.0, digits: int = 2, where: Callable[[Row], bool] | None = None):
    """mean ± std over the group (scaled: 100 turns fractions into %)."""
    get = _get(key)
    return lambda rs: fmt_mean_std([get(r) for r in rs if where is None or where(r)], scale=scale, digits=digits)


def mean(key: Key, fmt: str = "{:.2f}", scale: float = 1.0):
    """The group's mean times `scale`, formatted (`"{:,.0f}"`, `"{:.1f}x"` ...)."""
    get = _get(key)
    return lambda rs: fmt.format(scale * mean_std([get(r) for r in rs])[0])


def first(key: Key, fmt: str = "{}", scale: float | None = None):
    """The value of the group's first row (a label, or one row per group), times
    `scale` if given, formatted."""
    get = _get(key)
    return lambda rs: fmt.format(get(rs[0]) if scale is None else scale * get(rs[0]))


def count():
    return len


def group(rows: Iterable[Row], *keys: str, where: Callable[[Row], bool] | None = None) -> list[list[Row]]:
    """Rows grouped by the values of `keys`, groups in order of first appearance."""
    out: dict[tuple, list[Row]] = {}
    for r in rows:
        if where is None or where(r):
            out.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    return list(out.values())


def render(cols: Sequence[Col], groups: Iterable[list[Row]]) -> tuple[list[str], list[list]]:
    """(headers, table rows) for `BenchContext.write_markdown`'s sections."""
    return [c.header for c in cols], [[c.cell(rs) for c in cols] for rs in groups]


def section(title: str, cols: Sequence[Col], groups: Iterable[list[Row]]) -> tuple[str, list[str], list[list]]:
    headers, rows = render(cols, groups)
    return title, headers, rows
