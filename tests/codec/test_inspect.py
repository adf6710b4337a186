"""inspect_archive: sizes add up to the file, streams sit at or above their entropy."""

import math

import torch

from netshrink.codec import inspect_archive, write_archive
from netshrink_bench.throughput import measure_throughput, synthetic_model
from tests.codec.helpers import pruned, sparse_codebook


def test_sizes_add_up_and_respect_the_shannon_bound(tmp_path):
    g = torch.Generator().manual_seed(0)
    tensors = {
        "fc1.weight": sparse_codebook(300 * 784, seed=1).reshape(300, 784),
        "fc2.weight": sparse_codebook(100 * 300, bits_=6, sparsity=0.9, seed=2).reshape(100, 300),
        "fc3.weight": torch.randn(10, 100, generator=g) * 0.1,
        "fc1.bias": torch.randn(300, generator=g),
        "codes": torch.randint(0, 20, (20000,), generator=g, dtype=torch.int16),
        "pruned": pruned(20000, 0.2, g),
        "steps": torch.tensor(3),
    }
    path = tmp_path / "m.nshr"
    size = write_archive(path, {"factory": "lenet300_100"}, tensors)
    rows = inspect_archive(path)
    *per_tensor, total = rows
    assert [r["name"] for r in per_tensor] == list(tensors)
    assert total["name"] == "(total)" and total["bytes"] == size == path.stat().st_size
    assert sum(r["bytes"] for r in per_tensor) + total["header_bytes"] == size
    assert 24 < total["header_bytes"] < 600  # preamble + deflated JSON header
    numel = sum(t.numel() for t in tensors.values())
    assert total["dense_fp32_bytes"] == 4 * numel
    assert math.isclose(total["ratio"], 4 * numel / size)
    seen = set()
    for r, t in zip(per_tensor, tensors.values()):
        assert r["shape"] == tuple(t.shape) and r["dtype"] == str(t.dtype).split(".")[1]
        assert sum(s["bytes"] for s in r["streams"]) <= r["bytes"]
        for s in r["streams"]:
            seen.add(s["coder"])
            assert s["bytes"] >= math.floor(s["shannon_bytes"]), (r["name"], s)
            if s["coder"] != "raw" and s["symbols"] >= 10_000:
                assert s["bytes"] <= 1.02 * s["shannon_bytes"] + 64, (r["name"], s)
    assert {"ans", "raw"} <= seen
    assert per_tensor[0]["bits_per_weight"] < 0.6  # 95 % sparse, 5-bit codebook


def test_throughput_smoke():
    model = synthetic_model(200_000)
    assert sum(t.numel() for t in model.values()) == 200_000
    res = measure_throughput(200_000, repeats=1)
    assert res["encode_mb_s"] > 0 and res["decode_mb_s"] > 0
    assert res["ratio"] > 2  # 60 % of it is a 95 %-sparse 5-bit layer
    assert res["dense_mb"] == 0.8
