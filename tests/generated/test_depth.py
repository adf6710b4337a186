"""Stochastic depth: Huang et al.'s linear-decay survival probabilities, the test-time
scaling H = ReLU(p f(x) + x), its exact folding, greedy block removal."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import netshrink as ns
from netshrink.core.context import PrepareContext
from netshrink.methods.stochastic_depth import removable, residual_blocks, survival_probs


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
    m = ns.create("stochastic_depth", blocks=2, samples=200)
    m = ns.run_recipe(model, ns.Recipe.of(m, finetune=ns.TrainConfig(epochs=1)), data=train, progress=False).methods[0]
    assert len(m.removed_) == 2
    for path in m.removed_:
        assert isinstance(model.get_submodule(path), nn.Identity)
    # stages.1.0 and stages.2.0 change width and stride (projection shortcut): never removed.
    assert {p for p, b in residual_blocks(ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[2, 2, 1]))
            if removable(b)} == {"stages.0.0", "stages.0.1", "stages.1.1"}
    assert set(m.removed_) <= {"stages.0.0", "stages.0.1", "stages.1.1"}
    assert not removable(model.stages[1][0])
    with pytest.raises(ns.RecipeError, match="remove"):
        ns.compress_(ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[1, 1, 1]),
                     ns.Recipe.of(ns.create("stochastic_depth", blocks=2)), data=train, progress=False)


def test_recalibrate_bn_matches_the_data_statistics(digits):
    from netshrink.methods.stochastic_depth import recalibrate_bn
    from torch.utils.data import Subset

    train, _ = digits
    torch.manual_seed(0)
    model = ns.zoo.models.create("resnet_small", widths=[4, 8, 8], blocks=[1, 1, 1]).eval()
    data = Subset(train, range(500))  # two batches of 250
    recalibrate_bn(model, data)
    x = torch.stack([data[i][0] for i in range(500)])
    with torch.no_grad():
        h = model.stem[0](x)  # (500, 4, 8, 8), the stem BatchNorm's input
    assert torch.allclose(model.stem[1].running_mean, h.mean((0, 2, 3)), atol=1e-5)
    assert not model.training and model.stem[1].momentum == 0.1
