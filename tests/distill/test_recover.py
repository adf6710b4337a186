"""`recover` (issue 15): on a tiny BERT built from a config, pruned to 50 %, block-wise and
end-to-end hidden-state distillation lower the error of the hidden states against the
teacher (the model before pruning), keep every pruned weight at zero, and ignore padding."""
import copy

import pytest
import torch
import transformers

import netshrink as ns
from netshrink.errors import NetshrinkError

torch.set_num_threads(1)


def _bert():
    """A tiny BERT whose blocks change the hidden states a lot (init 0.2, not 0.02)."""
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=32,
                                  initializer_range=0.2)   # blocks that matter: pruning them hurts
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    return transformers.BertModel(cfg).eval()


def _batches(n=6, seed=1, t=12, pad=True):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        mask = torch.ones(8, t, dtype=torch.long)
        if pad:   # the last tokens of half the rows are padding
            mask[:4, t // 2:] = 0
        out.append({"input_ids": torch.randint(4, 99, (8, t), generator=g) * mask, "attention_mask": mask})
    return out


def _hidden_error(model, ref, data):
    """Σ‖h − h_ref‖² / Σ‖h_ref‖² of last_hidden_state over real tokens of held-out batches."""
    num = den = 0.0
    with torch.no_grad():
        for b in data:
            m = b["attention_mask"].bool()
            h, r = model(**b).last_hidden_state[m], ref(**b).last_hidden_state[m]
            num, den = num + float((h - r).pow(2).sum()), den + float(r.pow(2).sum())
    return num / den


def _zeros(model):
    return {n: m.weight == 0 for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def _pruned(teacher, calib):
    model = copy.deepcopy(teacher)
    ns.compress_(model, ns.Recipe.of(ns.create("magnitude", sparsity=0.5, targets={"include": ["type:Linear"]}),
                                     finetune=ns.TrainConfig(epochs=0)), data=calib, progress=False)
    return model


@pytest.mark.parametrize("params", [
    {"mode": "block", "epochs": 4, "lr": 3e-3},
    {"mode": "end_to_end", "epochs": 4, "lr": 3e-3, "intermediate": True},
    {"mode": "block", "epochs": 4, "lr": 3e-3, "loss": "cosine"},
], ids=["block", "end_to_end", "block-cosine"])
def test_recover_lowers_hidden_error_and_keeps_the_mask(params):
    teacher, calib, held = _bert(), _batches(), _batches(seed=7)
    pruned = _pruned(teacher, calib)
    mask = _zeros(pruned)
    assert all(float(z.float().mean()) >= 0.49 for z in mask.values())
    before = _hidden_error(pruned, teacher, held)
    model = copy.deepcopy(pruned)
    # `recover` finds the teacher the way compress_ gives it: the model before this recipe ran
    ns.compress_(model, ns.Recipe.of(ns.create("recover", **params), finetune=ns.TrainConfig(epochs=0)),
                 data=calib, teacher=teacher, progress=False)
    after = _hidden_error(model, teacher, held)
    assert after < 0.8 * before, f"hidden-state error {before:.4f} -> {after:.4f}"
    for name, z in _zeros(model).items():
        assert torch.equal(z | mask[name], z), f"{name}: a pruned weight is no longer zero"
    # the weights did change (not a no-op that keeps the zeros trivially)
    assert any(not torch.equal(a.weight, b.weight) for a, b in zip(model.modules(), pruned.modules())
               if isinstance(a, torch.nn.Linear))


def test_padding_tokens_do_not_count():
    """The targets at padding positions are never matched: changing the padded tokens'
    ids leaves the recovered weights unchanged."""
    teacher, calib = _bert(), _batches()
    pruned = _pruned(teacher, calib)
    other = [{k: v.clone() for k, v in b.items()} for b in calib]
    for b in other:
        b["input_ids"][b["attention_mask"] == 0] = 3
    runs = []
    for data in (calib, other):
        model = copy.deepcopy(pruned)
        ns.compress_(model, ns.Recipe.of(ns.create("recover", mode="block", epochs=1, lr=1e-3),
                                         finetune=ns.TrainConfig(epochs=0)), data=data, teacher=teacher,
                     progress=False)
        runs.append(model.state_dict())
    assert all(torch.allclose(runs[0][k], runs[1][k], atol=1e-5) for k in runs[0])


def test_bad_settings_are_named():
    with pytest.raises(NetshrinkError, match="lr"):
        ns.create("recover", lr=0.0)
    with pytest.raises(NetshrinkError, match="mode"):
        ns.create("recover", mode="layer")
    teacher, calib = _bert(), _batches(n=1)
    with pytest.raises(NetshrinkError, match="blocks 'encoder.nope' is not a module"):
        ns.compress_(copy.deepcopy(teacher), ns.Recipe.of(ns.create("recover", blocks="encoder.nope"),
                                                           finetune=ns.TrainConfig(epochs=0)),
                     data=calib, teacher=teacher, progress=False)


def test_vectors_only_tunes_biases_and_norms_and_leaves_quantized_weights_bit_exact(tmp_path):
    teacher, calib, held_out = _bert(), _batches(6, 1), _batches(3, 2)
    lin = {"include": ["type:Linear"]}
    quant = copy.deepcopy(teacher)
    ns.compress_(quant, ns.Recipe.of(ns.create("quantize", bits=3, targets=lin), finetune=ns.TrainConfig(epochs=0)),
                 data=calib, progress=False)
    tuned = copy.deepcopy(quant)
    ns.compress_(tuned, ns.Recipe.of(ns.create("recover", mode="block", epochs=4, lr=3e-3, tune="vectors"),
                                     finetune=ns.TrainConfig(epochs=0)), data=calib, teacher=teacher, progress=False)
    before, after = _hidden_error(quant, teacher, held_out), _hidden_error(tuned, teacher, held_out)
    assert after < 0.9 * before, (before, after)
    changed = [n for (n, p), (_, q) in zip(quant.named_parameters(), tuned.named_parameters()) if not torch.equal(p, q)]
    assert changed and all(dict(tuned.named_parameters())[n].dim() == 1 for n in changed)
    assert ns.save(tuned, tmp_path / "t.nshr") <= ns.save(quant, tmp_path / "q.nshr") + 4096   # grids kept
