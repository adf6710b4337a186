"""A rich progress bar that is silent when disabled or when not on a terminal."""
from __future__ import annotations

import contextlib
import os
import sys


class _Bar:
    def __init__(self, progress=None, task=None):
        self._p, self._t = progress, task

    def advance(self, n: int = 1) -> None:
        if self._p is not None and n:
            self._p.advance(self._t, n)


@contextlib.contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True):
    show = enabled and total > 0 and os.environ.get("NETSHRINK_PROGRESS", "1") != "0" and sys.stderr.isatty()
    if not show:
        yield _Bar()
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=Console(stderr=True), transient=True) as p:
        yield _Bar(p, p.add_task(desc, total=total))
