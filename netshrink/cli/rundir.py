"""Output folders that are never half-written and never clobber the user's data.

A run writes into a hidden temporary folder beside the target and renames it into
place only when it succeeded; an interrupted run leaves any earlier output intact.
An existing folder is replaced only when the user asked (`force`).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from netshrink import save
from netshrink.errors import NetshrinkError


def check_free(out: str | os.PathLike, force: bool) -> Path:
    out = Path(out)
    if out.exists() and not force:
        raise NetshrinkError(f"output {out} already exists; pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise NetshrinkError(f"output {out} exists and is not a folder")
    return out


@contextlib.contextmanager
def run_folder(out: str | os.PathLike, force: bool = False):
    """`with run_folder("runs/x") as d:` write files under d; committed at exit."""
    out = check_free(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_run(d: Path, *, recipe, model, before, after, seconds: float, header: str, extra: dict | None = None) -> None:
    """The files every compression run leaves: recipe.toml (headed by `header` and the
    measured result), report.json, and the saved model."""
    (d / "recipe.toml").write_text(recipe.to_toml(f"{header}\nresult: {after.summary(before)}"))
    report = {"baseline": before.to_dict(), "compressed": after.to_dict(), "compress_seconds": seconds,
              **(extra or {})}
    (d / "report.json").write_text(json.dumps(report, indent=2))
    save(model, d / "model.nshr", meta={"report": after.to_dict()})
