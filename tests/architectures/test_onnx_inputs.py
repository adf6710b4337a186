"""export_onnx takes the inputs a model is called with: a tensor, two tensors, a dict
of keyword tensors (a Hugging Face batch), and verifies ORT on a batch of another size."""
from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from netshrink.core.batches import Inputs
from netshrink.errors import NetshrinkError
from netshrink.runtime.onnx_export import export_onnx, verify_onnx


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(5, 3)

    def forward(self, x, z):
        return self.a(x) * self.b(z)


class Keywords(nn.Module):
    """Called as model(input_ids=..., attention_mask=...), returns a dict with logits."""

    def __init__(self):
        super().__init__()
        self.emb, self.head = nn.Embedding(11, 6), nn.Linear(6, 2)

    def forward(self, input_ids, attention_mask=None, scale: float = 1.0):
        h = self.emb(input_ids) * attention_mask.unsqueeze(-1) * scale   # (N, T, 6)
        return {"logits": self.head(h.mean(1)), "hidden": h}


def test_two_positional_tensors(tmp_path):
    torch.manual_seed(0)
    m = TwoInputs().eval()
    info = export_onnx(m, (torch.randn(2, 4), torch.randn(2, 5)), tmp_path / "m.onnx")
    assert info.checked == 2 and info.max_abs_diff < 1e-5
    assert [i.name for i in onnx.load(str(tmp_path / "m.onnx")).graph.input] == ["input", "input1"]


def test_keyword_batch_with_a_constant(tmp_path):
    torch.manual_seed(0)
    m = Keywords().eval()
    batch = {"input_ids": torch.randint(0, 11, (2, 7)), "attention_mask": torch.ones(2, 7, dtype=torch.long),
             "scale": 0.5}
    info = export_onnx(m, batch, tmp_path / "k.onnx")
    assert info.checked == 2 and info.max_abs_diff < 1e-5
    g = onnx.load(str(tmp_path / "k.onnx")).graph
    assert [i.name for i in g.input] == ["input_ids", "attention_mask"] and len(g.output) == 1
    # the file computes the logits: another model's logits disagree
    other = Keywords().eval()
    with pytest.raises(NetshrinkError, match="disagrees"):
        verify_onnx(other, tmp_path / "k.onnx", [Inputs((), batch)])
