"""measure(): the figures against hand-computed values and the file on disk."""
import copy
import json

import torch

import netshrink as ns


def test_figures_of_a_dense_model(digits, tmp_path):
    _, test = digits
    m = ns.zoo.models.create("lenet300_100", in_features=64)
    r = ns.measure(m, test, latency=False)
    params = 64 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10
    assert r.params == r.nonzeros == params and r.dense_bytes == 4 * params
    assert r.flops_dense == r.flops_effective == 2 * (64 * 300 + 300 * 100 + 100 * 10)  # multiply-adds x 2
    assert r.file_bytes == ns.save(m, tmp_path / "m.nshr")
    assert abs(r.storage_ratio - r.dense_bytes / r.file_bytes) < 1e-12
    assert json.loads(r.to_json())["params"] == params


def test_masks_alone_are_reported_as_saving_no_flops(digits):
    _, test = digits
    m = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.compress_(m, ns.Recipe.of(ns.create("magnitude", sparsity=0.9, runtime="dense")))
    r = ns.measure(m, test, latency=False)
    assert r.nonzeros < 0.2 * r.params and r.flops_effective == r.flops_dense
    assert any("not FLOPs" in n for n in r.notes)


def test_sparse_runtime_counts_skipped_work_and_times_against_the_reference(digits):
    _, test = digits
    ref = ns.zoo.models.create("lenet300_100", in_features=64)
    m = copy.deepcopy(ref)
    ns.compress_(m, ns.Recipe.of(ns.create("magnitude", sparsity=0.9, runtime="sparse")))
    r = ns.measure(m, test, reference=ref, batch_sizes=(8,), onnx=True)
    assert r.flops_effective < 0.15 * r.flops_dense
    assert set(r.speedup) == set(r.onnx_speedup) == {"b8"}
    assert r.speedup["b8"] == r.reference_latency_ms["b8"] / r.latency_ms["b8"]
    assert not any("not FLOPs" in n for n in r.notes)
    assert "ONNX Runtime latency b8" in str(r)


def test_fidelity_against_a_reference(digits):
    _, test = digits
    m = ns.zoo.models.create("lenet300_100", in_features=64)
    r = ns.measure(m, test, reference=copy.deepcopy(m), fidelity=True, latency=False, size=False)
    assert r.metric == "fidelity" and r.accuracy == 1.0
