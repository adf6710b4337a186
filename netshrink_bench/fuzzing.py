"""Mutated .nshr files and the judgement of what `ns.load` made of them (issue 14).

Shared by the fuzz benchmark (`netshrink bench fuzz`) and the property-based test
(tests/artifact/test_fuzz.py). Five kinds of mutation, each on a valid file of one of
the fixture models below (which use different encodings: sparse gaps, codebooks,
per-channel grids, byte planes, fp16 storage, runtime-module edits):

    bytes    1-4 random bytes of the file changed, or the file cut: no checksum fixed
    header   one node of the model header (factory, edits, configs, attributes, meta)
             replaced, deleted or duplicated; header checksum recomputed
    table    one field of a tensor entry (dtype, shape, encoding descriptor, lengths,
             checksums) changed; header and section checksums recomputed
    section  1-4 bytes of one tensor section changed, its checksum recomputed (the
             value checksum, computed on decoded values, is left: the decoder's own
             checks and that checksum must catch it)
    value    1-4 bytes of a dense-encoded section changed with both checksums recomputed:
             a legitimate file with other weights

What an accepted file counts as (`judge`):
    same        outputs bit-identical to the original model's
    other-model outputs differ, and the loaded model round-trips exactly (save -> load
                gives the same architecture and bit-identical outputs): the mutated
                file describes another valid model (a changed eps, kernel size, weight)
                and was read as written
    different   outputs differ and the model does not round-trip: a misread (must be 0)
`value` mutations are expected to be other-model; for every other kind a reading that
changes the outputs is legitimate only when the mutated field is part of the model's
description, which the round trip checks.
"""
from __future__ import annotations

import copy
import json
import random
import tempfile
import zlib
from pathlib import Path

import torch
from torch import nn

import netshrink as ns
from netshrink.codec import join_archive, split_archive
from netshrink.functional.quantize import quantize_weight
from netshrink.runtime.low_rank import LowRankLinear
from netshrink.runtime.sparse_linear import SparseLinear

KINDS = ("bytes", "header", "table", "section", "value")
OUTCOMES = ("refused (ArtifactError)", "refused (other exception)", "crash", "hang", "accepted, same outputs",
            "accepted, other valid model", "accepted, different outputs")


# ------------------------------------------------------------------------- fixtures
def _prune(w: torch.Tensor, keep: float, g: torch.Generator) -> None:
    w.mul_(torch.rand(w.shape, generator=g) < keep)


def _snap(w: torch.Tensor, k: int) -> None:
    """Weights onto k shared values (a k-means-like codebook)."""
    levels = torch.linspace(float(w.min()), float(w.max()), k)
    w.copy_(levels[(w.unsqueeze(-1) - levels).abs().argmin(-1)])


def _grid(w: torch.Tensor, bits: int) -> None:
    """Per-output-channel uniform grid (netshrink's per-channel quantization)."""
    w.copy_(quantize_weight(w, bits=bits, granularity="channel")[0])


def fixtures() -> dict[str, tuple[nn.Module, torch.Tensor, dict]]:
    """{name: (model in eval mode, example input, save hints)}, deterministic."""
    g = torch.Generator().manual_seed(0)
    out = {}
    torch.manual_seed(0)
    m = ns.zoo.models.create("lenet300_100", in_features=32).eval()
    with torch.no_grad():
        for lin in (m.fc1, m.fc2, m.fc3):
            _prune(lin.weight, 0.1, g)
            _snap(lin.weight, 16)
    out["sparse_codebook_mlp"] = (m, torch.rand(3, 32, generator=g), {})

    m = ns.zoo.models.create("lenet5", input_size=16).eval()
    with torch.no_grad():
        for p in (m.conv1.weight, m.conv2.weight, m.fc1.weight):
            _grid(p, 4)
    out["grid_cnn_fp16"] = (m, torch.rand(2, 1, 16, 16, generator=g), {"fc2.weight": "fp16", "fc2.bias": "fp16"})

    m = ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[1, 1, 1]).eval()
    with torch.no_grad():
        for b in m.buffers():
            if b.is_floating_point():
                b.uniform_(0.5, 1.5, generator=g)
    out["resnet_planes_bn"] = (m, torch.rand(2, 1, 12, 12, generator=g), {})

    m = ns.zoo.models.create("lenet300_100", in_features=32).eval()
    with torch.no_grad():
        _prune(m.fc1.weight, 0.2, g)
    m.fc1 = SparseLinear.from_linear(m.fc1)
    u, s, vh = torch.linalg.svd(m.fc2.weight.detach(), full_matrices=False)  # rank-8 factors of fc2
    m.fc2 = LowRankLinear.from_factors(u[:, :8] * s[:8], vh[:8], m.fc2.bias.detach())
    out["runtime_edits"] = (m.eval(), torch.rand(3, 32, generator=g), {})
    return out


def saved(model: nn.Module, hints: dict) -> bytes:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.nshr"
        ns.save(model, p, hints=hints)
        return p.read_bytes()


# ------------------------------------------------------------------------ mutations
_INTS = [0, 1, -1, 2, 3, 7, 8, 16, 255, 256, 4096, 65535, 1 << 20, 1 << 31, (1 << 31) - 1, 1 << 40, 1 << 62, -(1 << 31)]
_STRS = ["", "Linear", "Identity", "ReLU", "Sequential", "ModuleList", "SparseLinear", "LowRankLinear", "Conv2d",
         "BatchNorm2d", "LSTM", "float32", "float16", "bfloat16", "int32", "int64", "uint8", "bool", "dense", "cb",
         "sp", "pl", "gr", "raw", "huffman", "ans", "meta", "cuda", "cpu", "__class__", "training", "fc1",
         "fc1.weight", "stem.0", "os.system", "zeros", "circular", "same", "mlp", "lenet5", "resnet_small",
         "lstm", "bert_tiny", "\u00e9", "x" * 300]


def _pool(rng: random.Random):
    r = rng.random()
    if r < 0.35:
        return rng.choice(_INTS)
    if r < 0.6:
        return rng.choice(_STRS)
    if r < 0.7:
        return rng.choice([None, True, False, 0.5, 1e-5, 1e6, -1.5, 1e308])
    if r < 0.8:
        return [rng.choice(_INTS) for _ in range(rng.randint(0, 4))]
    if r < 0.9:
        return {"device": "meta"} if rng.random() < 0.5 else {}
    return {"path": rng.choice(["fc1", "fc2", "", "training", "stem.0"]), "type": rng.choice(_STRS[:10]),
            "config": {}}


def _nodes(obj, path=()):
    """Every (container, key) of a JSON tree, the root's children first."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.append((obj, k))
            out += _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.append((obj, i))
            out += _nodes(v, path + (i,))
    return out


def _tweak(v, rng: random.Random):
    if type(v) is int:
        return rng.choice([v + 1, v - 1, v * 2, -v, v * 1000, 0, v + (1 << 32), v // 2])
    if type(v) is float:
        return rng.choice([v * 2, -v, v * 1e6, 0.0, v + 1])
    if isinstance(v, bool):
        return not v
    return _pool(rng)


def _mutate_tree(tree, rng: random.Random) -> None:
    nodes = _nodes(tree)
    if not nodes:
        return
    parent, key = rng.choice(nodes)
    op = rng.random()
    if op < 0.45:
        parent[key] = _tweak(parent[key], rng)
    elif op < 0.7:
        parent[key] = _pool(rng)
    elif op < 0.85:
        if isinstance(parent, dict):
            del parent[key]
        else:
            parent.pop(key)
    elif isinstance(parent, list):
        parent.insert(key, copy.deepcopy(parent[key]))
    else:
        parent[rng.choice(["device", "dtype", "name", "_modules", "training", "extra"])] = _pool(rng)


def _flip(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    if not b:
        return bytes(b)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(b))
        b[i] = rng.choice([b[i] ^ (1 << rng.randrange(8)), rng.randrange(256), 0, 255])
    return bytes(b)


def mutate(data: bytes, kind: str, rng: random.Random) -> bytes:
    """A mutated copy of the valid archive `data` (see the module docstring)."""
    if kind == "bytes":
        if rng.random() < 0.15:
            return data[: rng.randrange(len(data))]
        return _flip(data, rng)
    meta, sections = split_archive(data)
    if kind == "header":
        _mutate_tree(meta["header"], rng)
        return join_archive(meta, sections)
    if kind == "table":
        _mutate_tree(rng.choice(meta["tensors"]), rng)
        return join_archive(meta, sections)
    i = rng.randrange(len(sections))
    if kind == "value":
        dense = [j for j, e in enumerate(meta["tensors"]) if e["enc"] == {"k": "dense"} and sections[j]]
        if dense:
            i = rng.choice(dense)
            sections[i] = _flip(sections[i], rng)
            meta["tensors"][i]["vcrc"] = zlib.crc32(sections[i])  # dense: the values are the section
            return join_archive(meta, sections)
    sections[i] = _flip(sections[i], rng)
    return join_archive(meta, sections)


# -------------------------------------------------------------------------- judging
def _bits_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape or a.dtype != b.dtype:
            return False
        ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
        return torch.equal(a.contiguous().view(ints[a.element_size()]), b.contiguous().view(ints[b.element_size()]))
    return False


def _run(model: nn.Module, x: torch.Tensor):
    with torch.no_grad():
        return model(x)


def signature(model: nn.Module) -> list:
    """Module types and state tensor shapes/dtypes, in order."""
    return ([(n, type(m).__name__) for n, m in model.named_modules()]
            + [(k, tuple(v.shape), str(v.dtype)) for k, v in model.state_dict().items()])


def judge(path: str, reference_out: torch.Tensor, x: torch.Tensor) -> str:
    """The outcome of loading `path` (an OUTCOMES entry other than crash / hang)."""
    try:
        model = ns.load(path)
    except ns.ArtifactError:
        return OUTCOMES[0]
    except Exception:  # noqa: BLE001 - what the fuzz is looking for
        return OUTCOMES[1]
    try:
        out = _run(model, x)
    except Exception:  # noqa: BLE001 - a described model that cannot run on this input
        out = None
    if out is not None and _bits_equal(out, reference_out):
        return OUTCOMES[4]
    try:  # does the file describe this model? save it and load it again
        buf = Path(path).with_suffix(".again.nshr")
        ns.save(model, buf)
        again = ns.load(buf)
        same_arch = signature(again) == signature(model)
        out2 = _run(again, x) if out is not None else None
        faithful = same_arch and (out is None or _bits_equal(out, out2))
    except Exception:  # noqa: BLE001
        faithful = False
    return OUTCOMES[5] if faithful else OUTCOMES[6]


__all__ = ["KINDS", "OUTCOMES", "fixtures", "saved", "mutate", "judge", "signature"]

