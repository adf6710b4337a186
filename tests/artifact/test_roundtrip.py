"""save / load of whole models: every zoo model bit-exact, architecture edits, and
files crafted to make the loader build something absurd."""
import json

import pytest
import torch

import netshrink as ns
from netshrink.codec import read_archive, write_archive

ZOO = [
    ("lenet300_100", {}, (1, 28, 28)),
    ("lenet5", {}, (1, 28, 28)),
    ("mlp", {"in_features": 40, "hidden": [16, 8]}, (40,)),
    ("resnet_small", {"widths": [4, 8, 8], "blocks": [1, 1, 1]}, (1, 28, 28)),
    ("densenet_small", {"growth": 4, "blocks": [2, 2], "init_channels": 8}, (1, 28, 28)),
    ("lstm", {"input_size": 28, "hidden_size": 16}, (28, 28)),
    ("gru", {"input_size": 28, "hidden_size": 16, "bidirectional": True}, (28, 28)),
]


@pytest.mark.parametrize("name, kw, shape", ZOO, ids=[z[0] for z in ZOO])
def test_every_zoo_model_round_trips_bit_exact(tmp_path, name, kw, shape):
    torch.manual_seed(0)
    m = ns.zoo.models.create(name, **kw).eval()
    for b in m.buffers():  # non-trivial BatchNorm statistics
        if b.is_floating_point():
            b.uniform_(0.5, 1.5)
    x = torch.rand(4, *shape)
    ns.save(m, tmp_path / "m.nshr")
    loaded = ns.load(tmp_path / "m.nshr")
    with torch.no_grad():
        assert torch.equal(m(x), loaded(x))
    for k, v in m.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k


def test_shrunk_layers_are_rebuilt_from_edits(tmp_path):
    m = ns.zoo.models.create("lenet300_100")
    m.fc1, m.fc2 = torch.nn.Linear(784, 120), torch.nn.Linear(120, 100)
    ns.save(m, tmp_path / "m.nshr")
    header, _ = read_archive(tmp_path / "m.nshr")
    assert [e["path"] for e in header["edits"]] == ["fc1", "fc2"]
    loaded = ns.load(tmp_path / "m.nshr")
    assert loaded.fc1.out_features == 120
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(m(x), loaded(x))


def test_a_model_with_reparams_is_refused(tmp_path):
    m = ns.zoo.models.create("lenet300_100")
    ns.Recipe.of(ns.create("magnitude", sparsity=0.5)).start(m)
    with pytest.raises(ns.NetshrinkError, match="re-parametrisations"):
        ns.save(m, tmp_path / "x.nshr")
    assert not (tmp_path / "x.nshr").exists()


def _tamper(tmp_path, mutate):
    m = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.save(m, tmp_path / "ok.nshr")
    header, tensors = read_archive(tmp_path / "ok.nshr")
    header = json.loads(json.dumps(header))
    mutate(header)
    write_archive(tmp_path / "bad.nshr", header, tensors)
    return tmp_path / "bad.nshr"


@pytest.mark.parametrize("mutate, message", [
    (lambda h: h["factory"]["kwargs"].update(in_features=10 ** 9), "refusing to load"),
    (lambda h: h["edits"].append({"path": "fc1", "type": "Linear",
                                  "config": {"in_features": 10 ** 6, "out_features": 10 ** 6, "bias": True}}),
     "refusing to load"),
    (lambda h: h["edits"].append({"path": "fc1", "type": "os.system", "config": {}}), "not one netshrink can build"),
    (lambda h: h["edits"].append({"path": "fc1", "attrs": {"_forward_hooks": 1}}), "not allowed"),
    (lambda h: h["factory"].update(name="no_such_model"), "unknown model"),
    (lambda h: h.update(version=99), "version 99"),
    (lambda h: h["edits"].append({"path": "fc1", "type": "Linear",
                                  "config": {"in_features": 64, "out_features": 7, "bias": True}}), "shape"),
])
def test_crafted_headers_are_refused_cleanly(tmp_path, mutate, message):
    with pytest.raises(ns.ArtifactError, match=message):
        ns.load(_tamper(tmp_path, mutate))
