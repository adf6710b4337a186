"""The command line: clear one-line errors with exit 2, outputs never clobbered."""
import json
import subprocess
import sys

import pytest
import torch

import netshrink as ns
from netshrink import cli
from netshrink.measure.counts import param_counts
from tests.helpers import tiny_mlp

RECIPE = '[finetune]\nepochs = 1\n\n[[step]]\nmethod = "magnitude"\nsparsity = 0.8\n'


@pytest.fixture
def tiny_model_file(tmp_path, digits):
    train, _ = digits
    m = tiny_mlp()
    ns.fit(m, train, ns.TrainConfig(epochs=2), progress=False)
    path = tmp_path / "tiny.nshr"
    ns.save(m, path)
    return path


def _compress(tmp_path, model_file, out, *extra, recipe=RECIPE):
    r = tmp_path / "r.toml"
    r.write_text(recipe)
    return cli.main(["compress", "--input", str(model_file), "--data", "digits", "--recipe", str(r),
                     "--out", str(out), *extra])


def test_compress_writes_a_run_folder(tmp_path, tiny_model_file):
    out = tmp_path / "run"
    assert _compress(tmp_path, tiny_model_file, out) == 0
    assert {p.name for p in out.iterdir()} == {"recipe.toml", "report.json", "model.nshr"}
    report = json.loads((out / "report.json").read_text())
    assert report["compressed"]["sparsity"] > 0.5
    text = (out / "recipe.toml").read_text()
    assert text.startswith("# netshrink compress") and "# result: accuracy" in text
    ns.Recipe.from_toml(text)  # the resolved recipe runs again as it is
    loaded = ns.load(out / "model.nshr")           # the saved model is the one the report measured
    assert param_counts(loaded) == (report["compressed"]["params"], report["compressed"]["nonzeros"])


def test_a_fidelity_metric_is_measured_before_and_after(tmp_path, tiny_model_file):
    # the baseline's fidelity is measured against itself: 1 before, below 1 after pruning 80 %
    out = tmp_path / "run"
    assert _compress(tmp_path, tiny_model_file, out, "--metric", "fidelity_cosine", "--no-latency") == 0
    report = json.loads((out / "report.json").read_text())
    before, after = report["baseline"], report["compressed"]
    assert before["metric"] == after["metric"] == "fidelity_cosine"
    assert before["metric_value"] == pytest.approx(1.0) and after["metric_value"] < 0.9999


def test_existing_output_is_refused_without_force(tmp_path, tiny_model_file, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert _compress(tmp_path, tiny_model_file, out) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "precious"


def test_interrupted_compress_leaves_earlier_output_intact(tmp_path, tiny_model_file, monkeypatch):
    out = tmp_path / "run"
    assert _compress(tmp_path, tiny_model_file, out) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("netshrink.cli.compress.compress_", interrupted)   # where the command looks it up
    assert _compress(tmp_path, tiny_model_file, out, "--force") == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


@pytest.mark.parametrize("recipe, message", [
    ('[[step]]\nmethod = "prune_everything"\n', "unknown method 'prune_everything'"),
    ('[[step]]\nmethod = "magnitude"\nsparsity = 2\n', "sparsity = 2.0 is out of range"),
    ('[[step]\n', "not valid TOML"),
])
def test_malformed_recipe_exits_2_with_one_line(tmp_path, tiny_model_file, capsys, recipe, message):
    assert _compress(tmp_path, tiny_model_file, tmp_path / "run", recipe=recipe) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_target_matching_nothing_names_the_pattern(tmp_path, tiny_model_file, capsys):
    recipe = '[[step]]\nmethod = "magnitude"\ntargets = ["fc9.weight"]\n'
    assert _compress(tmp_path, tiny_model_file, tmp_path / "run", recipe=recipe) == 2
    assert "fc9.weight" in capsys.readouterr().err


def test_subprocess_exit_code_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[step]]\nmethod = "magnitud"\n')
    p = subprocess.run([sys.executable, "-m", "netshrink.cli", "compress", "--model", "lenet300_100",
                        "--recipe", str(bad), "--out", str(tmp_path / "o")], capture_output=True, text=True)
    assert p.returncode == 2
    assert "unknown method 'magnitud'" in p.stderr and "Traceback" not in p.stderr


def test_corrupt_artifact_is_refused_cleanly(tmp_path, tiny_model_file, capsys):
    data = bytearray(tiny_model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.nshr"
    bad.write_bytes(bytes(data))
    assert cli.main(["inspect", str(bad)]) == 2
    assert "bad.nshr" in capsys.readouterr().err
    with pytest.raises(ns.ArtifactError):
        ns.load(bad)


def test_inspect_and_methods(tiny_model_file, capsys):
    assert cli.main(["inspect", str(tiny_model_file)]) == 0
    assert "hidden.0.weight" in capsys.readouterr().out
    assert cli.main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "magnitude" in out and "random" in out


def test_help_on_every_command(capsys):
    for cmd in ["demo", "train", "compress", "methods", "inspect", "bench"]:
        assert cli.main([cmd, "--help"]) == 0
        assert "Usage: netshrink " + cmd in capsys.readouterr().out


def test_usage_errors_exit_2_and_bare_command_shows_help(capsys):
    assert cli.main(["frobnicate"]) == 2
    assert "No such command" in capsys.readouterr().err
    assert cli.main(["compress", "--bogus"]) == 2
    assert cli.main([]) == 0
