"""measure(): the figures against hand-computed values and the file on disk."""
import copy
import importlib
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
    size = ns.save(m, tmp_path / "m.nshr")
    assert r.file_bytes == size == (tmp_path / "m.nshr").stat().st_size
    assert r.storage_ratio == 4 * params / size         # float32 weights over the file, by hand
    assert json.loads(r.to_json())["params"] == params


def test_masks_alone_are_reported_as_saving_no_flops(digits):
    _, test = digits
    m = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.compress_(m, ns.Recipe.of(ns.create("magnitude", sparsity=0.9, runtime="dense")))
    r = ns.measure(m, test, latency=False)
    assert r.nonzeros < 0.2 * r.params and r.flops_effective == r.flops_dense
    assert any("not FLOPs" in n for n in r.notes)


def test_sparse_runtime_counts_skipped_work_and_times_against_the_reference(digits, monkeypatch):
    _, test = digits
    ref = ns.zoo.models.create("lenet300_100", in_features=64)
    m = copy.deepcopy(ref)
    ns.compress_(m, ns.Recipe.of(ns.create("magnitude", sparsity=0.9, runtime="sparse")))
    # torch latency from a stub (model 0.5 ms, reference 2 ms): the figures must be those
    # of the right model, and the speedup 4x
    report_module = importlib.import_module("netshrink.measure.report")   # (the package exports a `report` too)
    monkeypatch.setattr(report_module, "compare_latency",
                        lambda a, b, x: (0.5 if a is m else 2.0, 2.0 if b is ref else 0.5))
    r = ns.measure(m, test, reference=ref, batch_sizes=(8,), onnx=True)
    assert r.flops_effective < 0.15 * r.flops_dense
    assert set(r.speedup) == set(r.onnx_speedup) == {"b8"}
    assert (r.latency_ms, r.reference_latency_ms, r.speedup) == ({"b8": 0.5}, {"b8": 2.0}, {"b8": 4.0})
    assert not any("not FLOPs" in n for n in r.notes)
    assert "ONNX Runtime latency b8" in str(r)


def test_fidelity_against_a_reference(digits):
    _, test = digits
    m = ns.zoo.models.create("lenet300_100", in_features=64)
    r = ns.measure(m, test, reference=copy.deepcopy(m), fidelity=True, latency=False, size=False)
    assert r.metric == "fidelity" and r.accuracy == 1.0
