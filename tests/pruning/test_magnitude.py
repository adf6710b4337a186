"""magnitude and random pruning against hand-checkable cases."""
import pytest
import torch

import netshrink as ns
from netshrink.functional.prune import global_masks, keep_count, topk_mask


def test_topk_mask_keeps_exactly_the_largest():
    s = torch.tensor([[0.1, 0.5], [0.3, 0.9]])
    assert topk_mask(s, sparsity=0.5).tolist() == [[False, True], [False, True]]
    assert int(topk_mask(torch.rand(1000), sparsity=0.9).sum()) == keep_count(1000, 0.9) == 100


def test_global_masks_one_threshold_with_floor():
    a, b = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.1, 0.2, 0.3, 0.4])
    ma, mb = global_masks([a, b], sparsity=0.5)
    assert ma.all() and not mb.any()
    ma, mb = global_masks([a, b], sparsity=0.5, max_sparsity=0.75)
    assert int(ma.sum()) == 3 and mb.tolist() == [False, False, False, True]


@pytest.mark.parametrize("method", ["magnitude", "random"])
@pytest.mark.parametrize("scope", ["layer", "global"])
def test_target_sparsity_reached_and_kept_through_finetuning(digits, method, scope):
    train, _ = digits
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.compress_(model, ns.Recipe.of(ns.create(method, sparsity=0.9, scope=scope, runtime="dense"),
                                     finetune=ns.TrainConfig(epochs=1)), data=train, progress=False)
    weights = [s.tensor for s in ns.select(model)]
    nz = sum(int((w != 0).sum()) for w in weights)
    total = sum(w.numel() for w in weights)
    assert abs(1 - nz / total - 0.9) < 0.002


def test_magnitude_prunes_the_smallest():
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    w0 = model.fc1.weight.detach().clone()
    ns.compress_(model, ns.Recipe.of(ns.create("magnitude", sparsity=0.5, runtime="dense")), data=None)
    kept = model.fc1.weight != 0
    assert w0[kept].abs().min() >= w0[~kept].abs().max()


def test_sparsity_map_overrides_per_layer():
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.compress_(model, ns.Recipe.of(ns.create("magnitude", sparsity=0.9, per_layer={"fc3.weight": 0.5}, runtime="dense")))
    assert float((model.fc3.weight == 0).float().mean()) == pytest.approx(0.5, abs=0.01)
    assert float((model.fc1.weight == 0).float().mean()) == pytest.approx(0.9, abs=0.01)


def test_baked_pruned_weights_are_positive_zeros():
    # -0.0 and +0.0 are different bit patterns: the codec would have to store the
    # sign of every pruned weight (about 1 bit each) if baking left -0.0 behind.
    model = ns.zoo.models.create("lenet300_100", in_features=64)
    ns.compress_(model, ns.Recipe.of(ns.create("magnitude", sparsity=0.9, runtime="dense")))
    w = model.fc1.weight
    assert int((w == 0).sum()) > 0 and int(((w == 0) & torch.signbit(w)).sum()) == 0
