"""What every command shares: the consoles and the command line being run."""
from __future__ import annotations

import shlex

from rich.console import Console

console = Console()
err_console = Console(stderr=True)

# Set by netshrink.cli.main before a command runs.
ARGV: list[str] = []


def invocation() -> str:
    """The command line that is running, for the headers of the files it writes."""
    return "netshrink " + " ".join(shlex.quote(a) for a in ARGV)
