"""write_archive is all-or-nothing: a failed save leaves the old file whole, no temp file."""

import errno
import os

import pytest
import torch

from netshrink.codec import archive, read_archive, write_archive
from netshrink.errors import ArtifactError


@pytest.fixture
def old(tmp_path):
    path = tmp_path / "model.nshr"
    write_archive(path, {"v": "old"}, {"w": torch.arange(10.0)})
    return path, path.read_bytes()


def new_tensors():
    return {"w": torch.randn(50_000), "b": torch.zeros(10)}


def test_failure_mid_write_keeps_old_file(old, monkeypatch):
    path, before = old
    real_write, calls = os.write, []

    def flaky_write(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])  # a short write, then...
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(archive.os, "write", flaky_write)
        with pytest.raises(ArtifactError, match="cannot write.*No space"):
            write_archive(path, {"v": "new"}, new_tensors())
    assert len(calls) == 2
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.nshr"]
    assert read_archive(path)[0] == {"v": "old"}


@pytest.mark.parametrize("where", ["fsync", "replace"])
def test_failure_at_fsync_or_rename_keeps_old_file(old, monkeypatch, where):
    path, before = old

    def boom(*a, **k):
        raise OSError(errno.EIO, f"{where} failed")

    with monkeypatch.context() as m:
        m.setattr(archive.os, where, boom)
        with pytest.raises(ArtifactError, match=f"cannot write.*{where} failed"):
            write_archive(path, {"v": "new"}, new_tensors())
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.nshr"]


def test_interrupt_mid_write_cleans_up(old, monkeypatch):
    path, before = old

    def interrupted(fd, data):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(archive.os, "write", interrupted)
        with pytest.raises(KeyboardInterrupt):
            write_archive(path, {"v": "new"}, new_tensors())
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.nshr"]


def test_encoding_error_touches_nothing(old):
    path, before = old
    with pytest.raises(ArtifactError):
        write_archive(path, {"v": "new"}, {"w": torch.ones(2, dtype=torch.complex64)})
    with pytest.raises(ArtifactError):
        write_archive(path, {"v": {1, 2}}, {"w": torch.ones(2)})
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.nshr"]


def test_success_replaces_and_reports_size(old):
    path, before = old
    os.chmod(path, 0o640)
    size = write_archive(path, {"v": "new"}, new_tensors())
    assert size == path.stat().st_size and path.read_bytes() != before
    assert read_archive(path)[0] == {"v": "new"}
    assert path.stat().st_mode & 0o777 == 0o640  # the old file's permissions carry over
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.nshr"]


def test_missing_directory_is_an_error(tmp_path):
    with pytest.raises(ArtifactError, match="cannot write"):
        write_archive(tmp_path / "nope" / "m.nshr", {}, {"w": torch.ones(2)})
