"""measure(onnx=True) on a user's model whose forward takes a dict or two tensors: exported
(inputs named after the dict's keys), verified and timed in ONNX Runtime, alone and against a
reference; a model ONNX cannot express gets one note saying why."""
import copy

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import netshrink as ns
from netshrink.core.batches import as_batches
from netshrink.runtime.onnx_export import export_onnx, ort_session
from tests.user import models as M

pytest.importorskip("onnxruntime")



@pytest.mark.parametrize("case", ["dict", "two_tensors"])
def test_onnx_latency_of_dict_and_two_tensor_models(case, tmp_path):
    model, data = (M.dictnet(), M.records_loader()) if case == "dict" else (M.two_tower(), M.pairs())
    alone = ns.measure(model, data, latency=False, size=False, onnx=True, batch_sizes=(1, 8))
    against = ns.measure(model, data, reference=copy.deepcopy(model), latency=False, size=False, onnx=True,
                         batch_sizes=(4,))
    for r, sizes in ((alone, {"b1", "b8"}), (against, {"b4"})):
        assert set(r.onnx_latency_ms) == sizes and all(v > 0 for v in r.onnx_latency_ms.values())
        assert not any("ONNX" in n for n in r.notes), r.notes
    assert set(against.onnx_speedup) == {"b4"} and set(against.onnx_reference_latency_ms) == {"b4"}
    assert any(k.startswith("ONNX Runtime latency") for k, _ in against.rows())
    info = export_onnx(model, as_batches(data).example_inputs(2), tmp_path / "m.onnx")
    names = [i.name for i in ort_session(info.path).get_inputs()]
    assert names == (["features", "category"] if case == "dict" else ["input", "input1"])
    assert info.checked == 2 and info.max_abs_diff < 1e-4


def test_a_model_onnx_cannot_express_is_one_note():
    class Svd(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return torch.linalg.svdvals(self.fc(x).reshape(-1, 2, 2))

    data = TensorDataset(torch.randn(16, 4), torch.randn(16, 2))
    r = ns.measure(Svd(), data, latency=False, size=False, onnx=True, batch_sizes=(1, 4))
    assert r.onnx_latency_ms == {}
    notes = [n for n in r.notes if "ONNX" in n]
    assert len(notes) == 1 and "\n" not in notes[0]
    assert "cannot export Svd" in notes[0] and "linalg_svdvals" in notes[0]
