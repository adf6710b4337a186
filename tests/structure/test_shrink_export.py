"""shrink(remove=...) for units other methods found dead; shrink → save → load bit-exact;
ONNX export verified against PyTorch; the export command."""
import copy

import pytest
import torch

import netshrink as ns
from netshrink.cli import main
from netshrink.runtime.onnx_export import export_onnx, verify_onnx
from netshrink.structure import analyze, remove_components, shrink
from netshrink.zoo.bert import register_bert_tiny
from netshrink.structure.importance import scores
from netshrink.structure.select import plan

register_bert_tiny()


def test_remove_masks_match_a_hand_built_smaller_mlp():
    torch.manual_seed(0)
    m = ns.zoo.models.create("mlp", in_features=6, hidden=[5, 4], num_classes=3).eval()
    ref = copy.deepcopy(m)
    dead = torch.tensor([False, True, False, True, False])
    x = torch.randn(4, 6)
    info = shrink(m, x, remove={"hidden.0": dead})
    assert info["removed"] == {"hidden.0": 2}
    keep = (~dead).nonzero().flatten()
    # the reference: the same rows of hidden.0 and columns of hidden.1, by hand
    torch.testing.assert_close(m.hidden[0].weight, ref.hidden[0].weight[keep], rtol=0, atol=0)
    torch.testing.assert_close(m.hidden[0].bias, ref.hidden[0].bias[keep], rtol=0, atol=0)
    torch.testing.assert_close(m.hidden[1].weight, ref.hidden[1].weight[:, keep], rtol=0, atol=0)
    assert (m.hidden[0].out_features, m.hidden[1].in_features) == (3, 3)


def test_coupled_residual_unit_needs_every_producer_marked():
    m = ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[1, 1, 1]).eval()
    x = torch.zeros(1, 1, 16, 16)
    mask = torch.zeros(4, dtype=torch.bool)
    mask[1] = True
    info = shrink(m, x, remove={"stem.0": mask})  # stages.0.0.conv2 also writes that channel
    assert info["removed"] == {} and info["kept_coupled"]
    info = shrink(m, x, remove={"stem.0": mask, "stages.0.0.conv2": mask})
    assert sum(info["removed"].values()) == 1 and m.stem[0].out_channels == 3
    with pytest.raises(ns.NetshrinkError, match="produces no prunable units"):
        shrink(m, x, remove={"fc": torch.ones(10, dtype=torch.bool)})


@pytest.mark.parametrize("name, kw, shape", [
    ("resnet_small", {"widths": [8, 16, 16], "blocks": [1, 1, 1]}, (2, 1, 16, 16)),
    ("lstm", {"input_size": 8, "hidden_size": 16}, (2, 8, 8)),
    ("bert_tiny", {"hidden_size": 32, "num_heads": 4, "intermediate_size": 48, "max_len": 8}, None),
])
def test_shrink_save_load_bit_exact_and_export_verified(name, kw, shape, tmp_path):
    torch.manual_seed(0)
    m = ns.zoo.models.create(name, **kw).eval()
    x = m.example_input(3) if shape is None else torch.randn(*shape)
    g = analyze(m, x)
    remove_components(m, g, plan(g, scores(m, g, "l2"), 0.5, scope="layer"))
    fresh = ns.zoo.models.create(name, **kw)
    assert sum(p.numel() for p in m.parameters()) < sum(p.numel() for p in fresh.parameters())
    assert_saved_and_exported(m, x, tmp_path)


def assert_saved_and_exported(m, x, tmp_path):
    """save -> load gives bit-identical outputs, and the ONNX export is verified by a
    check that is real: a model with a shifted output layer fails it. Returns the loaded model."""
    path = tmp_path / "m.nshr"
    ns.save(m, path)
    loaded = ns.load(path)
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))
    info = export_onnx(m, x, tmp_path / "m.onnx")
    assert info.checked == 2 and info.max_abs_diff < 1e-4
    other = copy.deepcopy(m)
    with torch.no_grad():
        list(other.parameters())[-1].add_(1.0)  # the output layer: no normalisation can hide it
    with pytest.raises(ns.NetshrinkError, match="disagrees"):
        verify_onnx(other, tmp_path / "m.onnx", [x])
    return loaded


def test_export_command(tmp_path, capsys):
    torch.manual_seed(0)
    m = ns.zoo.models.create("lenet5", input_size=28).eval()
    g = analyze(m, torch.zeros(1, 1, 28, 28))
    remove_components(m, g, plan(g, scores(m, g, "l1"), 0.4))
    ns.save(m, tmp_path / "m.nshr")
    assert main(["export", str(tmp_path / "m.nshr"), "--onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    assert (tmp_path / "m.onnx").stat().st_size > 0
    assert "ONNX Runtime matches PyTorch" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "missing.nshr"), "--onnx"]) == 2
    assert main(["export", str(tmp_path / "m.nshr")]) == 2  # no format chosen


@pytest.mark.parametrize("method, params", [("magnitude", {"sparsity": 0.9}), ("low_rank", {"mode": "ratio", "ratio": 0.25}),
                                            ("hashing", {})])
def test_models_of_other_methods_export_verified(method, params, tmp_path):
    """Sparse (CSR layers are written as dense ONNX ops), factorised and hashed models export."""
    train, test = ns.zoo.data.load("digits", 0)
    torch.manual_seed(0)
    m = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.compress_(m, ns.Recipe.of(ns.create(method, **params), finetune=ns.TrainConfig(epochs=0)), data=train,
                 progress=False)
    x = torch.stack([test[i][0] for i in range(4)])
    info = export_onnx(m, x, tmp_path / "m.onnx")
    assert info.checked == 2 and info.max_abs_diff < 1e-4
    assert bool(info.densified) == any(type(mm).__name__ == "SparseLinear" for mm in m.modules())
