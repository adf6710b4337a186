"""Files crafted with valid checksums to make `load` allocate, loop, or misread (issue 14):
each is refused with ArtifactError, in under 1 s of CPU and 50 MB of extra memory.

Each load runs in a forked child, so that its peak RSS (resource.getrusage: torch's
allocations included, which tracemalloc does not see) is its own, measured from its RSS
at the fork.
"""
import gc
import json
import os
import resource
import struct
import time
import zlib

import pytest
import torch

import netshrink as ns
from netshrink.artifact import LoadLimits
from netshrink.codec import join_archive, split_archive
from netshrink.codec.archive import MAGIC, VERSION, _PRE

MB = 1 << 20


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    """A small saved model (a zoo MLP with an edited layer) and its raw parts."""
    torch.manual_seed(0)
    m = ns.zoo.models.create("lenet300_100", in_features=16).eval()
    m.fc2 = torch.nn.Linear(300, 8)
    m.fc3 = torch.nn.Linear(8, 10)
    path = tmp_path_factory.mktemp("valid") / "ok.nshr"
    ns.save(m, path)
    return split_archive(path.read_bytes())


def _edit_header(valid, fn):
    meta, sections = valid
    meta = json.loads(json.dumps(meta))
    fn(meta["header"], meta["tensors"])
    return join_archive(meta, sections)


def _linear(i, o):
    return {"in_features": i, "out_features": o, "bias": False}


def _pack_text(text: bytes, sections) -> bytes:
    """An archive around header `text` (deflated), with a valid header checksum."""
    packed = zlib.compress(text, 9)
    pre = _PRE.pack(MAGIC, VERSION, 1, len(packed), len(text), 0)[:20]
    return pre + struct.pack("<I", zlib.crc32(pre + packed)) + packed + b"".join(sections)


def _bomb_header(valid):
    """A deflated header padded with 4 MB of spaces: a few kB on disk, inflating ~1000x."""
    meta, sections = valid
    return _pack_text(json.dumps(meta).encode()[:-1] + b" " * (4 * MB) + b"}", sections)


def _deep(valid):
    meta, sections = valid
    meta = json.loads(json.dumps(meta))
    meta["header"]["meta"] = "DEEP"
    return _pack_text(json.dumps(meta).encode().replace(b'"DEEP"', b"[" * 5000 + b"]" * 5000), sections)


def _dtype_swap(valid):
    """fc1.weight's entry says int32: the same bits, so every checksum still holds."""
    meta, sections = valid
    meta = json.loads(json.dumps(meta))
    for e in meta["tensors"]:
        if e["name"] == "fc1.weight":
            e["dtype"] = "int32"
    return join_archive(meta, sections)


def _const_bomb(valid):
    """fc1 becomes a 2^22 x 16 Linear whose weight is one constant: ~100 bytes of entry
    that decode to 256 MiB (within the codec's decode limit, 256 MiB + 4096x the file)."""
    meta, sections = valid
    meta = json.loads(json.dumps(meta))
    meta["header"]["edits"].append({"path": "fc1", "type": "Linear",
                                    "config": {"in_features": 16, "out_features": 1 << 22, "bias": True}})
    for e in meta["tensors"]:
        if e["name"] == "fc1.weight":
            e.update(shape=[1 << 22, 16], enc={"k": "cb", "K": 1, "i": {"c": "raw", "b": 0}}, len=4, vcrc=0)
            sections = list(sections)
            sections[meta["tensors"].index(e)] = b"\0\0\0\0"
    return join_archive(meta, sections)


CASES = {
    # memory and time bombs
    "linear edits, 6 GB": lambda v: _edit_header(v, lambda h, t: h["edits"].extend(
        {"path": f"fc{i % 3 + 1}", "type": "Linear", "config": _linear(1 << 14, 1 << 13)} for i in range(12))),
    "40 edits, 40 GiB": lambda v: _edit_header(v, lambda h, t: h["edits"].extend(
        {"path": "fc1", "type": "Linear", "config": _linear(1 << 15, 1 << 13)} for _ in range(40))),
    "one huge Linear": lambda v: _edit_header(v, lambda h, t: h["edits"].append(
        {"path": "fc1", "type": "Linear", "config": _linear(10 ** 6, 10 ** 6)})),
    "ModuleList of 100k children": lambda v: _edit_header(v, lambda h, t: h["edits"].append(
        {"path": "fc1", "type": "ModuleList", "config": {"children": [str(i) for i in range(100_000)]}})),
    "mlp of 200k hidden layers": lambda v: _edit_header(v, lambda h, t: h.update(
        factory={"name": "mlp", "kwargs": {"in_features": 4, "hidden": list(range(1, 200_001))}})),
    "resnet_small of 20k blocks": lambda v: _edit_header(v, lambda h, t: h.update(
        factory={"name": "resnet_small", "kwargs": {"widths": [4, 4, 4], "blocks": [20_000, 1, 1]}})),
    "constant tensor of 256 MiB": _const_bomb,
    "header inflating 1000x": _bomb_header,
    "header nested 5000 deep": _deep,
    # integrity
    "dtype changed, same bits": _dtype_swap,
    "config device=meta": lambda v: _edit_header(v, lambda h, t: h["edits"].append(
        {"path": "fc1", "type": "Linear", "config": {**_linear(16, 300), "bias": True, "device": "meta"}})),
    "config device=cuda": lambda v: _edit_header(v, lambda h, t: h["edits"].append(
        {"path": "fc1", "type": "Linear", "config": {**_linear(16, 300), "bias": True, "device": "cuda"}})),
    "attribute padding_mode": lambda v: _edit_header(v, lambda h, t: h["edits"].append(
        {"path": "fc1", "attrs": {"padding_mode": "circular"}})),
    "attribute in_features": lambda v: _edit_header(v, lambda h, t: h["edits"].append(
        {"path": "fc1", "attrs": {"in_features": 3}})),
    "BatchNorm eps = 1e6": lambda v: _edit_header(v, lambda h, t: h["edits"].append(
        {"path": "fc1", "type": "BatchNorm1d", "config": {"num_features": 300, "eps": 1e6, "momentum": 0.1,
                                                          "affine": True, "track_running_stats": True}})),
    # one error type (these raised TypeError / AssertionError / RuntimeError before)
    "factory kwarg 'name'": lambda v: _edit_header(v, lambda h, t: h["factory"]["kwargs"].update(name="x")),
    "factory kwarg unknown": lambda v: _edit_header(v, lambda h, t: h["factory"]["kwargs"].update(colour=3)),
    "edit path 'training'": lambda v: _edit_header(v, lambda h, t: h["edits"].append(
        {"path": "training", "type": "Identity", "config": {}})),
    "edit path 'fc1.weight'": lambda v: _edit_header(v, lambda h, t: h["edits"].append(
        {"path": "fc1.weight", "type": "Identity", "config": {}})),
    "negative size": lambda v: _edit_header(v, lambda h, t: h["edits"].append(
        {"path": "fc1", "type": "Linear", "config": _linear(-5, 300)})),
    "negative factory size": lambda v: _edit_header(v, lambda h, t: h["factory"]["kwargs"].update(in_features=-3)),
    "import path as type": lambda v: _edit_header(v, lambda h, t: h["edits"].append(
        {"path": "fc1", "type": "os.system", "config": {}})),
    "transformers class not allowed": lambda v: _edit_header(v, lambda h, t: (h.pop("factory"), h.update(
        transformers={"class": "os.system", "config": {"model_type": "bert"}, "attn": None}))),
    "shape disagrees": lambda v: _edit_header(v, lambda h, t: h["edits"].append(
        {"path": "fc1", "type": "Linear", "config": {**_linear(16, 7), "bias": True}})),
}

# a fragment of each refusal's message: the file is refused for the reason meant
EXPECT = {
    'config device=meta': "unexpected keys ['device']",
    'config device=cuda': "unexpected keys ['device']",
    'linear edits, 6 GB': 'bytes of tensors',
    '40 edits, 40 GiB': 'bytes of tensors',
    'one huge Linear': 'bytes of tensors',
    'ModuleList of 100k children': 'children',
    'mlp of 200k hidden layers': 'refusing to load',
    'resnet_small of 20k blocks': 'modules',
    'constant tensor of 256 MiB': 'bytes of tensors',
    'header inflating 1000x': 'implausible',
    'header nested 5000 deep': 'nested deeper',
    'dtype changed, same bits': 'stored as torch.int32',
    'attribute padding_mode': 'not allowed',
    'attribute in_features': 'not allowed',
    'BatchNorm eps = 1e6': 'eps = 1000000.0',
    "factory kwarg 'name'": 'malformed factory arguments',
    'factory kwarg unknown': 'colour',
    "edit path 'training'": 'not a module',
    "edit path 'fc1.weight'": 'not a module',
    'negative size': 'in_features = -5',
    'negative factory size': 'lenet300_100',
    'import path as type': 'not one netshrink can build',
    'transformers class not allowed': 'not one of transformers',
    'shape disagrees': 'shape',
}


def _vm_rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) * 1024


def load_in_child(path) -> dict:
    """ns.load(path) in a forked child: its exception type and message, CPU seconds, and
    its peak RSS above its RSS at the fork (the child's own peak, torch's allocations
    included, where the parent's earlier peaks would hide them)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        out = {}
        try:
            # The parent's heap (every earlier test's objects) is not the loader's cost: frozen,
            # the child's garbage collections skip it (else a late-running test measures them).
            gc.freeze()
            rss0 = _vm_rss()
            cpu = time.process_time()
            try:
                ns.load(path)
                out["error"] = None
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                out["error"], out["message"] = type(e).__name__, str(e)
            out["cpu"] = time.process_time() - cpu
            out["grew"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
        finally:
            os.write(w, json.dumps(out).encode())
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        text = f.read()
    os.waitpid(pid, 0)
    return json.loads(text)


@pytest.mark.parametrize("case", list(CASES))
def test_crafted_file_is_refused_cheaply(tmp_path, valid, case):
    path = tmp_path / "bad.nshr"
    path.write_bytes(CASES[case](valid))
    got = load_in_child(path)
    assert got["error"] == "ArtifactError", got
    assert got["message"].startswith(str(path)) and "\n" not in got["message"]
    assert EXPECT[case] in got["message"], got["message"]
    assert got["cpu"] < 1.0, f"{case}: {got['cpu']:.2f} s of CPU"
    assert got["grew"] < 50 * MB, f"{case}: RSS +{got['grew'] / MB:.1f} MB"


def test_the_limit_follows_the_file_size_and_the_user(tmp_path):
    """A 2 MB model of zeros in a 2 kB file passes the default floor (64 MiB), not a
    1 MiB one (1 MiB + 256x the file); max_bytes, the user's word, overrides the rule."""
    m = ns.zoo.models.create("mlp", in_features=512, hidden=[512, 512], num_classes=10)
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    path = tmp_path / "zeros.nshr"
    size = ns.save(m, path)
    assert size < 4000 and 256 * size + MB < 2 * MB
    ns.load(path)
    with pytest.raises(ns.ArtifactError, match="max_bytes"):
        ns.load(path, limits=LoadLimits(floor=MB))
    with pytest.raises(ns.ArtifactError, match="max_bytes"):
        ns.load(path, max_bytes=MB)
    loaded = ns.load(path, limits=LoadLimits(floor=MB, max_bytes=4 * MB))
    assert loaded.hidden[0].weight.shape == (512, 512)
