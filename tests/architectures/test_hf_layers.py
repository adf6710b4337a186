"""Layers of real transformers models that netshrink's methods meet: GPT-2's Conv1D
(a Linear stored (in, out)), torch weight_norm (wav2vec2's positional conv), and HF
code that reads `.weight` / `.stride` of a layer a method replaced."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrizations
from transformers.pytorch_utils import Conv1D

import netshrink as ns
from netshrink.core.targets import select
from netshrink.errors import TargetError
from netshrink.runtime.low_rank import LowRankLinear, TuckerConv
from netshrink.runtime.sparse_linear import SparseLinear


class Gpt2Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc, self.c_proj = Conv1D(32, 8), Conv1D(8, 32)   # Conv1D(out, in): weight (in, out)

    def forward(self, x):
        return self.c_proj(torch.relu(self.c_fc(x)))


def test_conv1d_is_a_default_target_and_factorises_as_its_linear_map():
    torch.manual_seed(0)
    m = Gpt2Mlp().eval()
    assert [s.name for s in select(m)] == ["c_fc.weight", "c_proj.weight"]
    wt = m.c_fc.weight.detach().T.clone()                       # (out, in) = (32, 8)
    ns.run_recipe(m, ns.Recipe.of(ns.create("low_rank", mode="rank", rank=2)), progress=False)
    assert isinstance(m.c_fc, LowRankLinear) and m.c_fc.rank == 2
    u, s, vh = torch.linalg.svd(wt, full_matrices=False)
    best = u[:, :2] * s[:2] @ vh[:2]                            # Eckart-Young rank-2 optimum of W^T
    assert m.c_fc.weight.shape == (32, 8) and torch.allclose(m.c_fc.weight, best, atol=1e-5)
    x = torch.randn(3, 5, 8)
    assert torch.allclose(m.c_fc(x), x @ best.T + m.c_fc.second.bias, atol=1e-5)


def test_weight_norm_weights_are_skipped_by_default_and_refused_when_named():
    conv = parametrizations.weight_norm(nn.Conv1d(4, 4, 3, padding=1), name="weight", dim=2)
    m = nn.Sequential(conv, nn.Flatten(), nn.Linear(4 * 6, 2))
    assert [s.name for s in select(m)] == ["2.weight"]
    with pytest.raises(TargetError, match="0.weight is computed by a _WeightNorm parametrisation"):
        ns.run_recipe(m, ns.Recipe.of(ns.create("quantize", targets=["0.weight"])), progress=False)


def test_replaced_layers_answer_weight_and_stride():
    lr = LowRankLinear.from_factors(torch.randn(6, 2), torch.randn(2, 5), torch.zeros(6))
    assert lr.weight.shape == (6, 5) and lr.weight.dtype == torch.float32
    tc = TuckerConv(3, 4, (2, 2), (2, 2), stride=2)
    assert tc.stride == (2, 2) and tc.weight.shape == (4, 3, 2, 2)
    lin = nn.Linear(5, 3)
    with torch.no_grad():
        lin.weight[:, :3] = 0
    sp = SparseLinear.from_linear(lin)
    assert sp.weight.layout == torch.sparse_csr and sp.weight.dtype == torch.float32
    assert torch.equal(sp.weight.to_dense(), lin.weight)
