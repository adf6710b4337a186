"""A damaged or hostile file fails with ArtifactError, and only ArtifactError."""

import copy
import json

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netshrink.codec import archive, read_archive, write_archive
from netshrink.errors import ArtifactError
from netshrink.functional.quantize import quantize_weight
from netshrink.functional.row_bits import quantize_rows
from tests.codec.helpers import assert_bit_exact, pruned, put, rebuild, sparse_codebook, split


# Deterministic (same examples every run) and no example database left in the repo.
FUZZ = dict(deadline=None, derandomize=True, database=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture])


def small_tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "cb": sparse_codebook(600, seed=1),                                # codebook + ANS
        "codes": torch.randint(0, 6, (300,), generator=g).float(),         # codebook + Huffman
        "dense": torch.randn(6, generator=g),
        "planes": torch.randn(300, generator=g) * 0.05,                    # byte planes
        "flags": torch.rand(9, generator=g) < 0.5,
        "step": torch.tensor(7),
        "pruned": pruned(3000, 0.1, g),  # sparse
        "grid": quantize_weight(torch.randn(24, 48, generator=g), bits=8, granularity="channel")[0],
        # rows at 2 and 8 bits: the grid with a code stream per width
        "widths": quantize_rows(torch.randn(24, 16, generator=g), torch.tensor([2] * 6 + [8] * 18),
                                symmetric=False, calibration="minmax"),
    }


@pytest.fixture(scope="module")
def valid(tmp_path_factory):
    path = tmp_path_factory.mktemp("valid") / "ok.nshr"
    write_archive(path, {"factory": "lenet"}, small_tensors())
    return path.read_bytes()


def check_fails(tmp_path, data: bytes, match: str | None = None) -> ArtifactError:
    path = tmp_path / "bad.nshr"
    put(path, data)
    with pytest.raises(ArtifactError) as info:
        read_archive(path)
    msg = str(info.value)
    assert str(path) in msg and "\n" not in msg
    if match is not None:
        assert match in msg, msg
    return info.value


def read_or_artifact_error(tmp_path, data: bytes):
    path = tmp_path / "fuzz.nshr"
    put(path, data)
    try:
        return read_archive(path)
    except ArtifactError as e:
        assert str(path) in str(e)
        assert "corrupt archive (" not in str(e), e  # a named check caught it, not the net
        return None


def test_valid_archive_exercises_every_coder(valid, tmp_path):
    path = tmp_path / "ok.nshr"
    path.write_bytes(valid)
    assert_bit_exact(small_tensors(), read_archive(path)[1])
    encodings = " ".join(r["encoding"] for r in archive.inspect_archive(path))
    for word in ("sparse", "codebook", "planes", "dense", "grid", "ans", "huffman", "+w2,8:"):   # rows of widths 2 and 8
        assert word in encodings, (word, encodings)


@pytest.mark.parametrize("xor", [0x01, 0x80, 0xFF])
def test_every_single_byte_flip_is_caught(valid, tmp_path, xor):
    for i in range(len(valid)):
        bad = bytearray(valid)
        bad[i] ^= xor
        check_fails(tmp_path, bytes(bad))


def test_every_truncation_is_caught(valid, tmp_path):
    for n in range(len(valid)):
        check_fails(tmp_path, valid[:n])
    check_fails(tmp_path, valid + b"\x00", "unexpected bytes")


def test_clear_messages(valid, tmp_path):
    check_fails(tmp_path, b"PK\x03\x04 a zip file", "bad magic")
    check_fails(tmp_path, b"", "bad magic")
    check_fails(tmp_path, valid[:30], "truncated")
    meta, sections = split(valid)
    check_fails(tmp_path, rebuild(meta, sections, version=2), "unsupported format version 2")
    bad = bytearray(valid)
    bad[-1] ^= 1
    check_fails(tmp_path, bytes(bad), "checksum mismatch in tensor 'widths'")  # the last section
    with pytest.raises(ArtifactError, match="cannot read"):
        read_archive(tmp_path / "missing.nshr")
    with pytest.raises(ArtifactError, match="cannot read"):
        read_archive(tmp_path)  # a directory


# Hostile headers with valid checksums: every structural check, not only the CRC, holds.
def _set(path):
    def mutate(meta):
        *keys, last = path
        node = meta
        for k in keys:
            node = node[k]
        return node, last
    return mutate


HOSTILE = {
    "absurd shape": (lambda m: m["tensors"][0].update(shape=[2 ** 40, 2 ** 40]), "absurd"),
    "budget": (lambda m: m["tensors"][0].update(shape=[2 ** 36]), "implausibly large"),
    "negative dim": (lambda m: m["tensors"][0].update(shape=[-1, 5]), "bad dimension"),
    "float dim": (lambda m: m["tensors"][0].update(shape=[600.0]), "bad dimension"),
    "bool dim": (lambda m: m["tensors"][5].update(shape=[True]), "bad dimension"),
    "deep shape": (lambda m: m["tensors"][0].update(shape=[1] * 65), "shape"),
    "wrong numel": (lambda m: m["tensors"][0].update(shape=[601]), "tensor 'cb'"),
    "dtype": (lambda m: m["tensors"][0].update(dtype="complex64"), "dtype"),
    "len": (lambda m: m["tensors"][2].update(len=m["tensors"][2]["len"] + 1), "truncated"),
    "len short": (lambda m: m["tensors"][2].update(len=m["tensors"][2]["len"] - 1), "unexpected"),
    "kind": (lambda m: m["tensors"][2]["enc"].update(k="zip"), "not one of"),
    "codebook K": (lambda m: m["tensors"][1]["enc"].update(K=300), "out of range"),
    "stream bytes": (lambda m: m["tensors"][1]["enc"]["i"].update(b=10 ** 9), "out of range"),
    "coder": (lambda m: m["tensors"][1]["enc"]["i"].update(c="lzma"), "not one of"),
    "sparse m": (lambda m: m["tensors"][6]["enc"].update(m=10 ** 6), "out of range"),
    "sparse nnz": (lambda m: m["tensors"][6]["enc"].update(nnz=1), "sparse gaps"),
    "sparse F": (lambda m: m["tensors"][6]["enc"].update(F=9), "out of range"),
    "nested sparse": (lambda m: m["tensors"][6]["enc"].update(v=copy.deepcopy(m["tensors"][6]["enc"])),
                      "not one of"),
    "planes": (lambda m: m["tensors"][3]["enc"]["s"].pop(), "planes"),
    "grid groups": (lambda m: m["tensors"][7]["enc"].update(G=7), "grid groups"),
    "grid alphabet": (lambda m: m["tensors"][7]["enc"].update(A=300), "out of range"),
    "grid widths": (lambda m: m["tensors"][8]["enc"].update(i={"c": "raw"}), "grid width streams malformed"),
    "grid width set": (lambda m: m["tensors"][8]["enc"]["i"].pop(), "do not match the widths"),
    "grid width alphabet": (lambda m: m["tensors"][8]["enc"].update(A=2), "past the alphabet"),
    "grid in sparse": (lambda m: m["tensors"][6]["enc"].update(v=copy.deepcopy(m["tensors"][7]["enc"])),
                       "not one of"),
    "duplicate": (lambda m: m["tensors"][2].update(name="cb"), "duplicate"),
    "no tensors": (lambda m: m.pop("tensors"), "tensor table"),
    "header type": (lambda m: m.update(header=[1, 2]), "'header'"),
    "enc type": (lambda m: m["tensors"][2].update(enc="dense"), "'enc'"),
    "cast": (lambda m: m["tensors"][2].update(cast="int8"), "cast"),
    "bool bytes": (lambda m: m["tensors"][4].update(dtype="uint8"), None),  # legal reinterpretation
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_header_with_valid_checksums(valid, tmp_path, case):
    meta, sections = split(valid)
    mutate, match = HOSTILE[case]
    mutate(meta)
    data = rebuild(meta, sections)
    if match is None:
        assert read_or_artifact_error(tmp_path, data) is not None
        return
    err = check_fails(tmp_path, data, match)
    assert "corrupt archive (" not in str(err)  # caught by a named check, not the safety net


@pytest.mark.parametrize("raw", [b"{", b"\xff\xfe", b"[1]", b"null", b"[" * 100000 + b"]" * 100000,
                                 b'{"header":{},"tensors":[1]}', b'{"header":{},"tensors":[{}]}'])
def test_malformed_json_header(tmp_path, raw):
    check_fails(tmp_path, rebuild(None, [], raw_header=raw))


def test_bool_tensor_with_bad_bytes(valid, tmp_path):
    meta, sections = split(valid)
    meta["tensors"][4]["enc"] = {"k": "dense"}
    meta["tensors"][4]["len"] = 9
    sections[4] = bytes([0, 1, 2, 0, 0, 0, 0, 0, 0])
    check_fails(tmp_path, rebuild(meta, sections), "bool")


def test_decompression_bomb_header_is_refused(tmp_path):
    import struct
    import zlib

    text = zlib.compress(b" " * 10_000_000, 9)  # ~10 kB that inflate 1000x
    for claimed, why in [(10_000_000 * 100, "larger than the limit"), (10_000_000, "implausible")]:
        pre = archive._PRE.pack(archive.MAGIC, 1, 1, len(text), claimed, 0)[:20]
        data = pre + struct.pack("<I", zlib.crc32(pre + text)) + text
        check_fails(tmp_path, data, why)


@settings(max_examples=300, **FUZZ)
@given(data=st.binary(max_size=400), prefix=st.booleans())
def test_fuzz_arbitrary_bytes(tmp_path, data, prefix):
    if prefix:
        data = archive.MAGIC + data
    assert read_or_artifact_error(tmp_path, data) is None or len(data) >= 24


@settings(max_examples=300, **FUZZ)
@given(edits=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255), st.sampled_from("sdi")),
                      min_size=1, max_size=4))
def test_fuzz_mutated_archives(valid, tmp_path, edits):
    data = bytearray(valid)
    for pos, value, op in edits:
        pos %= len(data) + 1
        if op == "s" and pos < len(data):
            data[pos] = value
        elif op == "d":
            del data[pos:pos + 1 + value % 8]
        else:
            data[pos:pos] = bytes([value])
    result = read_or_artifact_error(tmp_path, bytes(data))
    if bytes(data) != valid:
        assert result is None  # checksums catch every edit that changes the bytes


@settings(max_examples=400, **FUZZ)
@given(which=st.integers(0, 6), edits=st.lists(st.tuples(st.integers(0, 10 ** 6), st.integers(0, 255)),
                                               min_size=1, max_size=6), grow=st.integers(-3, 3))
def test_fuzz_section_payloads_behind_valid_checksums(valid, tmp_path, which, edits, grow):
    """Garbage reaching the decoders themselves (CRC recomputed): ArtifactError or a tensor."""
    meta, sections = split(valid)
    sec = bytearray(sections[which])
    for pos, value in edits:
        if sec:
            sec[pos % len(sec)] = value
    sec = sec[:max(0, len(sec) + grow)] if grow < 0 else sec + bytes(grow)
    sections[which] = bytes(sec)
    meta["tensors"][which]["len"] = len(sec)
    result = read_or_artifact_error(tmp_path, rebuild(meta, sections))
    if result is not None:
        t = result[1][meta["tensors"][which]["name"]]
        assert list(t.shape) == meta["tensors"][which]["shape"]


def test_ans_and_huffman_garbage_behind_valid_checksums(valid, tmp_path):
    meta, sections = split(valid)
    rng = np.random.default_rng(0)
    coded = [i for i, e in enumerate(meta["tensors"])
             if '"ans"' in json.dumps(e) or '"huffman"' in json.dumps(e)]
    assert coded
    for _ in range(200):
        i = int(rng.choice(coded))
        m, s = copy.deepcopy(meta), list(sections)
        s[i] = rng.integers(0, 256, len(s[i])).astype(np.uint8).tobytes()
        read_or_artifact_error(tmp_path, rebuild(m, s))
