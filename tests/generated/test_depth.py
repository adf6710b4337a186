"""Stochastic depth: Huang et al.'s linear-decay survival probabilities, the test-time
scaling H = ReLU(p f(x) + x), its exact folding, greedy block removal."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netshrink as ns
from netshrink.core.context import PrepareContext
from netshrink.methods.depth import removable, survival_probs


def test_linear_decay_rule():
    assert survival_probs(4, p_last=0.5) == pytest.approx([0.875, 0.75, 0.625, 0.5])


def test_eval_scaling_and_exact_folding(digits):
    torch.manual_seed(0)
    model = ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[2, 1, 1]).eval()
    block = model.stages[0][1]
    x = torch.rand(2, 4, 8, 8)
    with torch.no_grad():
        f = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
    m = ns.create("stochastic_depth", p_last=0.5)
    m.prepare(model, PrepareContext())
    p = m.probs_[1]
    with torch.no_grad():
        assert torch.allclose(block(x), F.relu(p * f + x), atol=1e-6)
        before = model(torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
        m.finalize(model)
        after = model(torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(before, after, atol=1e-5)
    assert m.removed_ == []


def test_training_drops_whole_branches():
    torch.manual_seed(0)
    model = ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[2, 1, 1])
    m = ns.create("stochastic_depth", p_last=0.01)
    m.prepare(model, PrepareContext())
    block = model.stages[2][0]  # last block: survives with p = 0.01
    model.train()
    outs = [block.bn2(torch.ones(1, 8, 2, 2)).abs().sum().item() for _ in range(50)]
    assert sum(o == 0 for o in outs) >= 45


def test_removal_only_of_identity_shortcut_blocks(digits):
    train, _ = digits
    torch.manual_seed(0)
    model = ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[2, 2, 1])
    m = ns.create("stochastic_depth", remove=2, calib=200)
    ns.compress_(model, ns.Recipe.of(m, finetune=ns.TrainConfig(epochs=1)), data=train, progress=False)
    assert len(m.removed_) == 2
    for path in m.removed_:
        assert isinstance(model.get_submodule(path), nn.Identity)
    assert all(p in ("stages.0.1", "stages.1.1") for p in m.removed_)
    assert not removable(model.stages[1][0])
    with pytest.raises(ns.RecipeError, match="remove"):
        ns.compress_(ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[1, 1, 1]),
                     ns.Recipe.of(ns.create("stochastic_depth", remove=2)), data=train, progress=False)
