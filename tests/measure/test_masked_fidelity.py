"""Fidelity metrics on padded token batches compare the real tokens only."""
import torch

import netshrink as ns
from netshrink.measure import metrics
from netshrink.train.loop import predict_positions
from tests.tiny_bert import outlier_bert


def test_cosine_over_real_tokens_only_a_hand_computed_case():
    r = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])           # (1, 3, 2)
    o = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [-1.0, -1.0]]])          # token 2 is padding
    mask = torch.tensor([[True, True, False]])
    # tokens: cos 1 and cos 45 deg; the padded position (cos -1) is left out
    assert abs(metrics.compute("fidelity_cosine", "fidelity_cosine", o, None, r, mask) - (1 + 0.5 ** 0.5) / 2) < 1e-6
    assert abs(metrics.compute("fidelity_cosine", "fidelity_cosine", o, None, r) - (1 + 0.5 ** 0.5 - 1) / 3) < 1e-6
    assert metrics.compute("fidelity_top1", "fidelity_top1", o, None, r, mask) == 0.5    # argmax 0 vs 1 at token 1


def _batches(lengths_per_batch):
    g = torch.Generator().manual_seed(0)
    out = []
    for lengths in lengths_per_batch:
        width = max(lengths)
        ids = torch.randint(1, 99, (len(lengths), width), generator=g)
        mask = torch.zeros(len(lengths), width, dtype=torch.long)
        for i, n in enumerate(lengths):
            mask[i, :n] = 1
        out.append({"input_ids": ids * mask, "attention_mask": mask})
    return out


def test_padding_changes_nothing_and_batches_of_different_widths_concatenate():
    model = outlier_bert().eval()
    data = _batches([[5, 9, 3], [12, 4]])                  # widths 9 and 12
    out, y, mask = predict_positions(model, data)
    assert out.shape == (5, 12, 64) and y is None and mask.sum() == 5 + 9 + 3 + 12 + 4
    # the same model with every padded position's output disturbed: fidelity is still exact
    noisy = out.clone()
    noisy[~mask] += torch.randn_like(noisy[~mask])
    assert metrics.compute("fidelity_cosine", "auto", noisy, None, out, mask) > 1 - 1e-6
    assert metrics.compute("fidelity_cosine", "auto", noisy, None, out) < 0.99
    # the report of a model against itself on padded batches: cosine 1
    r = ns.measure(model, data, reference=outlier_bert().eval(), latency=False, size=False)
    assert r.metric == "fidelity_cosine" and r.metric_value > 1 - 1e-6
