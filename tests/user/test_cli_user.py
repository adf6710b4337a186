"""The CLI on a user's own model: --model package.module:factory, --weights, --data
package.module:function, --loss, --metric, hf:DIR; compress, inspect, export, --input."""
import json

import pytest
import torch

import netshrink as ns
from netshrink.cli import main
from tests.user import models as M

RECIPE = """
[finetune]
epochs = 1
batch_size = 32
[[step]]
method = "magnitude"
sparsity = 0.6
runtime = "dense"
"""



def test_users_cnn_compress_inspect_export_and_recompress(tmp_path, capsys):
    rec = tmp_path / "r.toml"
    rec.write_text(RECIPE)
    w = tmp_path / "w.safetensors"
    from safetensors.torch import save_file
    trained = M.cnn()
    ns.fit(trained, M.digits_train(), ns.TrainConfig(epochs=3, lr=1e-2, batch_size=32), progress=False)
    save_file(trained.state_dict(), str(w))
    user = ["--model", "tests.user.models:cnn", "--data", "tests.user.models:digits"]
    assert main(["compress", *user, "--weights", str(w), "--recipe", str(rec), "--no-latency",
                 "--out", str(tmp_path / "a")]) == 0
    report = json.loads((tmp_path / "a/report.json").read_text())
    assert report["compressed"]["metric"] == "accuracy" and report["baseline"]["accuracy"] > 0.3
    loaded = ns.load(tmp_path / "a/model.nshr", base=M.cnn())
    assert (loaded.conv2.weight == 0).float().mean() >= 0.59
    x = M.digits_test()[:4][0]
    assert not torch.equal(loaded(x), M.cnn()(x))             # the weights came from --weights, not the factory

    assert main(["inspect", str(tmp_path / "a/model.nshr")]) == 0
    assert "CNN (your own model" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "a/model.nshr"), "--onnx", *user]) == 0
    assert (tmp_path / "a/model.onnx").stat().st_size > 0
    assert main(["compress", "--input", str(tmp_path / "a/model.nshr"), *user, "--recipe", str(rec),
                 "--no-latency", "--out", str(tmp_path / "b")]) == 0
    again = ns.load(tmp_path / "b/model.nshr", base=M.cnn())
    # The recompressed file holds the model the CLI measured: the same accuracy on the same data.
    second = json.loads((tmp_path / "b/report.json").read_text())["compressed"]
    assert ns.measure(again, M.digits_test(), latency=False, size=False).metric_value == second["metric_value"]


def test_regressor_with_loss_and_metric_options(tmp_path):
    rec = tmp_path / "r.toml"
    rec.write_text(RECIPE)
    sd = tmp_path / "w.pt"
    torch.save(M.regressor().state_dict(), sd)
    args = ["compress", "--model", "tests.user.models:regressor", "--weights", str(sd), "--data",
            "tests.user.models:diabetes", "--loss", "mse", "--metric", "tests.user.models:my_mae",
            "--recipe", str(rec), "--no-latency", "--out", str(tmp_path / "a")]
    assert main(args) == 0
    report = json.loads((tmp_path / "a/report.json").read_text())
    assert report["compressed"]["metric"] == "my_mae" and report["compressed"]["accuracy"] is None
    assert main([*args[:-1], str(tmp_path / "c"), "--loss", "hinge"]) == 2


def test_bad_sources_are_one_line_errors(tmp_path, capsys):
    rec = tmp_path / "r.toml"
    rec.write_text(RECIPE)
    base = ["compress", "--recipe", str(rec), "--out", str(tmp_path / "x")]
    assert main([*base, "--model", "tests/user/models.py:cnn"]) == 2
    assert "not a file path" in capsys.readouterr().err
    assert main([*base, "--model", "tests.user.models:nothing"]) == 2
    bad = tmp_path / "bad.pt"
    torch.save({"fc.weight": torch.zeros(1)}, bad)
    assert main([*base, "--model", "tests.user.models:cnn", "--weights", str(bad),
                 "--data", "tests.user.models:digits"]) == 2
    assert "does not fit the model" in capsys.readouterr().err


def test_local_transformers_folder_without_labels_distils(tmp_path):
    pytest.importorskip("transformers")
    M.bert().save_pretrained(tmp_path / "bert")
    rec = tmp_path / "r.toml"
    rec.write_text(RECIPE.replace('method = "magnitude"', 'method = "magnitude"\n'
                                  'targets = ["re:.*encoder.*dense.weight"]'))
    assert main(["compress", "--model", f"hf:{tmp_path / 'bert'}", "--data", "tests.user.models:token_batches",
                 "--recipe", str(rec), "--no-latency", "--out", str(tmp_path / "a")]) == 0
    report = json.loads((tmp_path / "a/report.json").read_text())
    assert report["compressed"]["metric"] == "fidelity_cosine"
    loaded = ns.load(tmp_path / "a/model.nshr")
    batch = M.token_batches()[0]
    assert loaded(**batch).last_hidden_state.shape == (8, 12, 32)


@pytest.mark.parametrize("factory,data,step", [
    ("lstm", "sequence_data", 'method = "quantize"\nbits = 4'),
    ("dictnet", "records_data", 'method = "kmeans"\nbits = 3\nfinetune_centroids = false'),
    ("two_tower", "pair_data", 'method = "low_rank"\nratio = 0.5'),
])
def test_lstm_dict_and_two_tensor_models_through_the_cli(tmp_path, factory, data, step):
    rec = tmp_path / "r.toml"
    rec.write_text(f"[finetune]\nepochs = 0\n[[step]]\n{step}\n")
    assert main(["compress", "--model", f"tests.user.models:{factory}", "--data", f"tests.user.models:{data}",
                 "--recipe", str(rec), "--no-latency", "--out", str(tmp_path / "a")]) == 0
    report = json.loads((tmp_path / "a/report.json").read_text())["compressed"]
    loaded = ns.load(tmp_path / "a/model.nshr", base=getattr(M, factory)())
    # The file holds the very model the CLI measured: the same metric value on the same data.
    again = ns.measure(loaded, getattr(M, data)()[1], latency=False, size=False)
    assert again.metric == report["metric"] == "accuracy"
    assert again.metric_value == report["metric_value"]
    fresh = {k: v for k, v in getattr(M, factory)().state_dict().items()}
    assert any(k not in fresh or not torch.equal(v, fresh[k]) for k, v in loaded.state_dict().items())
