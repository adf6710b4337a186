"""Property-based fuzz of `ns.load` (hypothesis): a valid file of one of four models
with different encodings (codebooks + sparse zeros, per-channel grids + fp16 storage,
BatchNorm buffers + byte planes, runtime-module edits: CSR and low-rank layers) gets one
node of its JSON header or of its tensor table replaced, deleted or duplicated, and
its checksums recomputed, so that the rebuild logic itself is exercised, not only the
checksum. Property: the file is refused with ArtifactError, or loads with the original
outputs, or loads as another valid model that round-trips exactly (fuzzing.judge).
The long run is `netshrink bench fuzz` (benchmarks/fuzz.md)."""
import functools
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import netshrink as ns
from netshrink.codec import join_archive, split_archive
from netshrink_bench import fuzzing as F

GOOD = {F.OUTCOMES[0], F.OUTCOMES[4], F.OUTCOMES[5]}


@functools.lru_cache(maxsize=1)
def _files():
    out, d = {}, tempfile.mkdtemp(prefix="ns-fuzz-test-")
    for name, (model, x, hints) in F.fixtures().items():
        data = F.saved(model, hints)
        path = os.path.join(d, f"{name}.nshr")
        with open(path, "wb") as f:
            f.write(data)
        out[name] = (data, F._run(ns.load(path), x), x)
    return out, d


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), 1 << 63) | st.sampled_from(F._INTS)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6) | st.sampled_from(F._STRS),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(F._STRS[:20] + ["device", "k"]),
                                                                inner, max_size=3),
    max_leaves=6)


def _apply(tree, index: int, op: str, value) -> None:
    nodes = F._nodes(tree)
    parent, key = nodes[index % len(nodes)]
    if op == "replace":
        parent[key] = value
    elif op == "delete":
        del parent[key]
    elif op == "duplicate" and isinstance(parent, list):
        parent.insert(key, parent[key])
    elif isinstance(parent, dict):
        parent["device" if isinstance(value, (str, type(None))) else "extra"] = value
    else:
        parent.append(value)


@pytest.mark.parametrize("part", ["header", "tensors"])
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["sparse_codebook_mlp", "grid_cnn_fp16", "resnet_planes_bn", "runtime_edits"]),
       index=st.integers(0, 1 << 20), op=st.sampled_from(["replace", "delete", "duplicate", "add"]), value=JSON)
def test_a_mutated_file_is_refused_or_read_as_written(part, name, index, op, value):
    files, d = _files()
    data, ref, x = files[name]
    meta, sections = split_archive(data)
    tree = meta["header"] if part == "header" else meta["tensors"]
    _apply(tree, index, op, value)
    path = os.path.join(d, f"mutated-{part}.nshr")
    with open(path, "wb") as f:
        f.write(join_archive(meta, sections))
    assert F.judge(path, ref, x) in GOOD
