"""Output folders and files that are never half-written and never clobber the user's data.

A run writes into a hidden temporary folder beside the target (`.NAME.partial-PID-*`)
and renames it into place only when it succeeded; an interrupted run (Ctrl-C, SIGTERM)
removes it and leaves any earlier output intact, and one killed outright (SIGKILL)
leaves it for the next run into the same folder to remove (its process is gone). An
existing output is replaced only when the user asked (`force`). Every check of a
destination (exists, a file on the way, a read-only or unwritable folder) runs before
any work.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from netshrink import save
from netshrink.errors import NetshrinkError


def check_writable_dir(folder: str | os.PathLike, what: str = "output") -> Path:
    """`folder` exists as a folder we can write in, or can be created: else one clear
    NetshrinkError (a regular file on the way, a read-only file system, no permission)."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():   # the nearest existing ancestor decides
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise NetshrinkError(f"{what} {folder}: {probe} is a file, not a folder")
    try:   # os.access misses read-only mounts and ACLs: really create something
        with tempfile.TemporaryDirectory(prefix=".netshrink-probe-", dir=probe):
            pass
    except OSError as e:
        raise NetshrinkError(f"{what} {folder}: cannot write in {probe} ({e.strerror or e})") from None
    return folder


def check_free(out: str | os.PathLike, force: bool) -> Path:
    """A run folder `out` may be written: free (or replaceable with `force`), and its
    parent writable. Call it before any work."""
    out = Path(out)
    if out.exists() and not force:
        raise NetshrinkError(f"output {out} already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise NetshrinkError(f"output {out} exists and is not a folder")
    check_writable_dir(out.parent if str(out.parent) else Path("."))
    return out


def check_free_file(out: str | os.PathLike, force: bool) -> Path:
    """The same for one output file."""
    out = Path(out)
    if out.is_dir():
        raise NetshrinkError(f"output {out} is a folder, not a file")
    if out.exists() and not force:
        raise NetshrinkError(f"output {out} already exists; pass --force to replace it")
    check_writable_dir(out.parent if str(out.parent) else Path("."))
    return out


_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.(?:partial|old)-(?P<pid>\d+)(?:-.*)?$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process
        return True
    return pid != 0


def clean_leftovers(out: Path) -> list[Path]:
    """Remove `.OUT.partial-PID-*` / `.OUT.old-PID` folders whose process is gone
    (a run killed by SIGKILL or a power cut); returns what was removed."""
    gone = []
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return gone
    for p in entries:
        m = _LEFTOVER.match(p.name)
        if m and m["name"] == out.name and p.is_dir() and not _alive(int(m["pid"])):
            shutil.rmtree(p, ignore_errors=True)
            gone.append(p)
    return gone


@contextlib.contextmanager
def run_folder(out: str | os.PathLike, force: bool = False):
    """`with run_folder("runs/x") as d:` write files under d; committed at exit."""
    out = check_free(out, force)
    tmp = None
    try:   # one block from creation on: a signal right after mkdtemp still removes the folder
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            clean_leftovers(out)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
        except OSError as e:
            raise NetshrinkError(f"output {out}: cannot create it ({e.strerror or e})") from None
        yield tmp
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    try:
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise NetshrinkError(f"output {out}: cannot move the finished run into place ({e.strerror or e})") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_run(d: Path, *, recipe, model, before, after, seconds: float, header: str, extra: dict | None = None) -> None:
    """The files every compression run leaves: the saved model, then report.json and
    recipe.toml (headed by `header` and the measured result). The model file holds no
    measurement, so that the same command gives the same bytes; the report's file size
    is the size of that file."""
    size = save(model, d / "model.nshr")
    if after.file_bytes:   # the figures measured on a scratch save, now of the file shipped
        if after.bits_per_param is not None:
            after.bits_per_param *= size / after.file_bytes
        after.file_bytes = size
        after.storage_ratio = after.dense_bytes / size
    report = {"baseline": before.to_dict(), "compressed": after.to_dict(), "compress_seconds": seconds,
              **(extra or {})}
    (d / "report.json").write_text(json.dumps(report, indent=2))
    (d / "recipe.toml").write_text(recipe.to_toml(f"{header}\nresult: {after.summary(before)}"))
