"""The `netshrink` command line: one file per command in this package, listed below.

Every user error (a bad recipe, an unknown method, a corrupt file, an existing
output) is one line on stderr and exit code 2 — never a traceback.

A new command: a function with typer options in `netshrink/cli/<command>.py`, and one
`app.command()(...)` line below.
"""
from __future__ import annotations

import sys

import typer

from netshrink.cli import auto, bench, compress, demo, export, inspect, methods, sensitivity, train
from netshrink.cli.common import ARGV, err_console, invocation
from netshrink.errors import NetshrinkError

__all__ = ["app", "main", "invocation"]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Compress trained PyTorch networks into models that are measurably smaller and faster.")

# The commands, in the order `netshrink --help` lists them.
app.command()(demo.demo)
app.command()(train.train)
app.command()(compress.compress)
app.command()(methods.methods)
app.command()(inspect.inspect)
app.command()(bench.bench)
app.command()(export.export)
app.command()(sensitivity.sensitivity)
app.command()(auto.auto)


def main(argv: list[str] | None = None) -> int:
    ARGV[:] = list(sys.argv[1:] if argv is None else argv)
    cmd = typer.main.get_command(app)
    try:
        rc = cmd.main(args=argv, prog_name="netshrink", standalone_mode=False)
        if isinstance(rc, int):  # --help and click's own exits
            return rc
    except NetshrinkError as e:
        err_console.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
        return 2
    except typer.Abort:
        err_console.print("interrupted")
        return 130
    except KeyboardInterrupt:
        err_console.print("interrupted; earlier outputs are left as they were")
        return 130
    except typer.exceptions.TyperException as e:  # usage errors (typer vendors its own click)
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `netshrink`: the help, exit 0
            e.show()
            return 0
        e.show()
        return getattr(e, "exit_code", 2)
    return 0
