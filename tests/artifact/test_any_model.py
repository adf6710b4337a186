"""`ns.save` works for every model (issue 13): a transformers model is rebuilt from the
config stored in the header; a user's own model from the base passed at load; no code
in the file either way."""
import json

import pytest
import torch
from torch import nn

import netshrink as ns
from netshrink.codec import read_archive


class MyNet(nn.Module):
    """A user's model: not in the zoo, a custom block inside."""

    def __init__(self):
        super().__init__()
        self.block = nn.Sequential(nn.Linear(12, 32), nn.ReLU())
        self.fc1 = nn.Linear(32, 24)
        self.fc2 = nn.Linear(24, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(self.block(x))))


def _shrunk() -> MyNet:
    """fc1 keeps 10 of its 24 outputs (fc2 its matching inputs), as structured pruning leaves it."""
    torch.manual_seed(0)
    m = MyNet().eval()
    keep = torch.arange(10)
    fc1, fc2 = nn.Linear(32, 10), nn.Linear(10, 3)
    with torch.no_grad():
        fc1.weight.copy_(m.fc1.weight[keep])
        fc1.bias.copy_(m.fc1.bias[keep])
        fc2.weight.copy_(m.fc2.weight[:, keep])
        fc2.bias.copy_(m.fc2.bias)
    m.fc1, m.fc2 = fc1, fc2
    return m


@pytest.mark.parametrize("base_at_save", [False, True], ids=["base-at-load-only", "base-at-save-too"])
def test_a_users_model_loads_against_its_base(tmp_path, base_at_save):
    m = _shrunk()
    ns.save(m, tmp_path / "mine.nshr", base=MyNet() if base_at_save else None)
    header, _ = read_archive(tmp_path / "mine.nshr")
    assert header["user"]["class"] == "MyNet" and "factory" not in header
    assert "MyNet(" not in json.dumps(header) and "forward" not in json.dumps(header)  # no code, no source
    loaded = ns.load(tmp_path / "mine.nshr", base=MyNet())
    x = torch.rand(5, 12)
    with torch.no_grad():
        assert torch.equal(loaded(x), m(x))
    assert loaded.fc1.out_features == 10


def test_a_users_model_without_its_base_is_refused_clearly(tmp_path):
    ns.save(_shrunk(), tmp_path / "mine.nshr")
    with pytest.raises(ns.ArtifactError, match=r"pass it, ns.load\(path, base=MyNet"):
        ns.load(tmp_path / "mine.nshr")
    with pytest.raises(ns.ArtifactError, match="base given is a Linear"):
        ns.load(tmp_path / "mine.nshr", base=nn.Linear(2, 2))


def _tiny_bert():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=16)
    return BertModel(cfg).eval()


def test_a_transformers_model_is_rebuilt_from_its_config(tmp_path):
    pytest.importorskip("transformers")
    m = _tiny_bert()
    with torch.no_grad():   # a structural edit too: one FFN layer shrunk
        layer = m.encoder.layer[0]
        layer.intermediate.dense = nn.Linear(16, 20)
        layer.output.dense = nn.Linear(20, 16)
    ns.save(m, tmp_path / "bert.nshr")
    header, _ = read_archive(tmp_path / "bert.nshr")
    assert header["transformers"]["class"] == "BertModel" and header["transformers"]["config"]["hidden_size"] == 16
    assert [e["path"] for e in header["edits"]] == ["encoder.layer.0.intermediate.dense",
                                                   "encoder.layer.0.output.dense"]
    loaded = ns.load(tmp_path / "bert.nshr", map_location="cpu")
    ids = torch.randint(0, 64, (3, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).last_hidden_state, m(input_ids=ids).last_hidden_state)


def test_only_transformers_model_classes_are_built(tmp_path):
    pytest.importorskip("transformers")
    ns.save(_tiny_bert(), tmp_path / "bert.nshr")
    header, tensors = read_archive(tmp_path / "bert.nshr")
    from netshrink.codec import write_archive

    for cls in ["PreTrainedModel", "AutoModel", "Tensor", "BertTokenizer"]:  # importable names, not model classes
        header["transformers"]["class"] = cls
        write_archive(tmp_path / "bad.nshr", header, tensors)
        with pytest.raises(ns.ArtifactError, match="not one of transformers' model classes"):
            ns.load(tmp_path / "bad.nshr")


def test_map_location_moves_the_model(tmp_path):
    m = _shrunk()
    ns.save(m, tmp_path / "mine.nshr")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = ns.load(tmp_path / "mine.nshr", base=MyNet(), map_location=device)
    assert {p.device.type for p in loaded.parameters()} == {device}
    with torch.no_grad():
        assert torch.allclose(loaded(torch.ones(2, 12, device=device)).cpu(), m(torch.ones(2, 12)), atol=1e-6)
