"""The `netshrink` command line: one file per command in this package, listed below.

Every user error (a bad recipe, an unknown method, a corrupt file, an existing
output) is one line on stderr and exit code 2 — never a traceback.

A new command: a function with typer options in `netshrink/cli/<command>.py`, and one
`app.command()(...)` line below.
"""
from __future__ import annotations

import signal
import sys
import threading

import typer
from rich.markup import escape

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


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that `finally` / `except BaseException`
    blocks run (run_folder removes its half-written folder) before the exit."""


def _on_sigterm(signum, frame):
    raise Terminated()


def _error(msg: str) -> int:
    # escape(): a message naming `[[step]]` or a path with brackets is not rich markup
    err_console.print(f"[red]error:[/] {escape(msg)}", highlight=False, soft_wrap=True)
    return 2


def main(argv: list[str] | None = None) -> int:
    ARGV[:] = list(sys.argv[1:] if argv is None else argv)
    cmd = typer.main.get_command(app)
    # Ctrl-C raises KeyboardInterrupt and SIGTERM Terminated while a command runs, whatever
    # handler a library imported earlier left installed (in one process, after other work,
    # SIGINT was found swallowed: a signalled run exited 0).
    previous = {}
    if threading.current_thread() is threading.main_thread():
        previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _on_sigterm),
                    signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    try:
        rc = cmd.main(args=argv, prog_name="netshrink", standalone_mode=False)
        if rc == 130:  # typer turns Ctrl-C into Exit(130) and returns it silently
            raise KeyboardInterrupt
        if isinstance(rc, int):  # --help and click's own exits
            return rc
    except NetshrinkError as e:
        return _error(str(e))
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted; earlier outputs are left as they were", highlight=False)
        return 130
    except Terminated:
        err_console.print("terminated; earlier outputs are left as they were", highlight=False)
        return 143
    except UnicodeDecodeError as e:   # a user's file that is not text
        return _error(f"a file given is not UTF-8 text ({e.reason} at byte {e.start})")
    except OSError as e:   # the user's files and folders: permissions, full disk, read-only file system
        where = f"{e.filename}: " if e.filename else ""
        return _error(f"{where}{e.strerror or e}")
    except typer.exceptions.TyperException as e:  # usage errors (typer vendors its own click)
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `netshrink`: the help, exit 0
            e.show()
            return 0
        e.show()
        return getattr(e, "exit_code", 2)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
    return 0
