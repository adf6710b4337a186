"""Every CLI error is one line on stderr and exit 2, checked before any work, and
nothing is overwritten (issue 14); interrupted runs leave nothing behind; two identical
runs write byte-identical model files."""
import errno
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import netshrink as ns
from netshrink import cli
from netshrink.cli import rundir
from tests.helpers import tiny_mlp

RECIPE = '[finetune]\nepochs = 1\n\n[[step]]\nmethod = "magnitude"\nsparsity = 0.8\n'


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "tiny.nshr"
    ns.save(tiny_mlp(), path)
    return path


def _recipe(tmp_path, text=RECIPE) -> Path:
    r = tmp_path / "r.toml"
    r.write_bytes(text if isinstance(text, bytes) else text.encode())
    return r


def _one_line_error(capsys, rc, fragment) -> str:
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    assert fragment in err, err
    return err


def _compress(model_file, recipe, out, *extra):
    return cli.main(["compress", "--input", str(model_file), "--data", "digits", "--recipe", str(recipe),
                     "--out", str(out), *extra])


def test_recipe_that_is_not_utf8(tmp_path, model_file, capsys):
    rc = _compress(model_file, _recipe(tmp_path, b'[[step]]\nmethod = "magnitude" # \xff\xfe\n'), tmp_path / "o")
    _one_line_error(capsys, rc, "not UTF-8")
    assert not (tmp_path / "o").exists()


def test_recipe_path_that_is_a_folder(tmp_path, model_file, capsys):
    (tmp_path / "rdir").mkdir()
    _one_line_error(capsys, _compress(model_file, tmp_path / "rdir", tmp_path / "o"), "is a folder")


def test_empty_recipe_message_keeps_its_brackets(tmp_path, model_file, capsys):
    _one_line_error(capsys, _compress(model_file, _recipe(tmp_path, ""), tmp_path / "o"), "[[step]]")


def test_out_under_a_regular_file(tmp_path, model_file, capsys):
    (tmp_path / "f").write_text("precious")
    _one_line_error(capsys, _compress(model_file, _recipe(tmp_path), tmp_path / "f" / "run"), "is a file")
    assert (tmp_path / "f").read_text() == "precious"


def test_out_in_a_folder_nobody_may_write(tmp_path, model_file, capsys):
    # /sys refuses new entries even to root (chmod 555 would not stop root, who runs these tests here)
    _one_line_error(capsys, _compress(model_file, _recipe(tmp_path), "/sys/netshrink-run"), "cannot write")


def test_out_on_a_read_only_file_system(tmp_path, model_file, capsys, monkeypatch):
    real = os.mkdir

    def read_only(path, *a, **k):   # the kernel's answer on a read-only mount
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return real(path, *a, **k)

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(os, "mkdir", read_only)
    _one_line_error(capsys, _compress(model_file, _recipe(tmp_path), tmp_path / "ro" / "run"), "Read-only")


def test_bench_out_is_checked_before_any_work(tmp_path, capsys):
    t = time.perf_counter()
    _one_line_error(capsys, cli.main(["bench", "fuzz", "--quick", "--out", "/sys/netshrink-bench"]), "cannot write")
    assert time.perf_counter() - t < 5


def test_export_onto_an_existing_file_needs_force(tmp_path, model_file, capsys):
    dest = tmp_path / "m.onnx"
    dest.write_text("precious")
    _one_line_error(capsys, cli.main(["export", str(model_file), "--onnx", "--out", str(dest)]), "--force")
    assert dest.read_text() == "precious"


def test_every_steps_targets_are_checked_before_training(tmp_path, model_file, capsys):
    recipe = RECIPE.replace("epochs = 1", "epochs = 50") + '\n[[step]]\nmethod = "magnitude"\nsparsity = 0.5\n' \
        'targets = ["no_such_layer"]\n'
    t = time.perf_counter()
    _one_line_error(capsys, _compress(model_file, _recipe(tmp_path, recipe), tmp_path / "o"), "no_such_layer")
    assert time.perf_counter() - t < 20   # 50 epochs of step 1 were not run first
    assert not (tmp_path / "o").exists()


def test_a_killed_runs_leftovers_are_removed_by_the_next_run(tmp_path):
    dead = tmp_path / ".run.partial-999999999-abc"   # no such process
    dead.mkdir()
    (dead / "model.nshr").write_text("half")
    mine = tmp_path / f".run.partial-{os.getpid()}-xyz"   # a live process's: kept
    mine.mkdir()
    with rundir.run_folder(tmp_path / "run") as d:
        (d / "x").write_text("1")
    assert not dead.exists() and mine.exists() and (tmp_path / "run" / "x").exists()


def _signal_when_half_written(folder: Path, sig) -> threading.Thread:
    """Send `sig` to this process once a run folder under `folder` is half-written."""
    def watch():
        deadline = time.time() + 300
        while time.time() < deadline:
            if any(q.name.startswith(".run.partial-") for q in folder.iterdir()):
                time.sleep(0.02)   # inside the work, as a user's Ctrl-C would be (0.2 s: the work had ended once under load)
                os.kill(os.getpid(), sig)
                return
            time.sleep(0.005)
    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("sig, rc, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_an_interrupted_run_says_so_in_one_line_and_leaves_nothing(tmp_path, model_file, capsys, sig, rc, word):
    """Signalled while measuring inside its half-written run folder (--onnx makes that
    phase last): the signal reaches the main thread as it would from a terminal."""
    r = _recipe(tmp_path, RECIPE.replace("epochs = 1", "epochs = 0"))
    watcher = _signal_when_half_written(tmp_path, sig)
    code = _compress(model_file, r, tmp_path / "run", "--onnx")
    watcher.join(5)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == rc and len(lines) == 1 and word in lines[0] and "Traceback" not in err, err
    assert not (tmp_path / "run").exists() and not [q for q in tmp_path.iterdir() if ".partial-" in q.name]


def test_two_identical_runs_write_byte_identical_models(tmp_path, model_file):
    r = _recipe(tmp_path)
    for name in ("a", "b"):
        assert _compress(model_file, r, tmp_path / name) == 0
    a, b = (tmp_path / "a" / "model.nshr").read_bytes(), (tmp_path / "b" / "model.nshr").read_bytes()
    assert a == b
    report, again = (json.loads((tmp_path / n / "report.json").read_text()) for n in ("a", "b"))
    assert report["compressed"]["accuracy"] == again["compressed"]["accuracy"]   # same recipe twice, same figures
    assert report["compressed"]["file_bytes"] == len(a)   # the report's size is the shipped file's
    assert ns.load(tmp_path / "a" / "model.nshr").ns_meta == {}   # no measurement in the model file


def test_train_out_is_checked_before_training(tmp_path, capsys):
    (tmp_path / "f").write_text("precious")
    rc = cli.main(["train", "--model", "lenet300_100", "--data", "digits", "--out", str(tmp_path / "f" / "m.nshr")])
    _one_line_error(capsys, rc, "is a file")
    assert (tmp_path / "f").read_text() == "precious"


def test_ctrl_c_interrupts_even_when_a_library_left_sigint_ignored(tmp_path, model_file, capsys):
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)      # as an imported library may leave it
    try:
        r = _recipe(tmp_path, RECIPE.replace("epochs = 1", "epochs = 0"))
        watcher = _signal_when_half_written(tmp_path, signal.SIGINT)
        code = _compress(model_file, r, tmp_path / "run", "--onnx")
        watcher.join(5)
        assert code == 130 and "interrupted" in capsys.readouterr().err
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN            # the caller's handler is back
    finally:
        signal.signal(signal.SIGINT, before)
    assert not (tmp_path / "run").exists()
