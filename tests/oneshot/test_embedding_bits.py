"""`embedding_bits`: rows of an embedding table at bit widths from calibration counts."""
import copy

import pytest
import torch
import transformers

import netshrink as ns
from netshrink.errors import RecipeError
from netshrink.functional.quantize import quantize_weight
from netshrink.functional.row_bits import good_turing_prior, quantize_rows, row_bits

torch.set_num_threads(1)


def test_row_bits_matches_the_water_filling_hand_case():
    # Equal ranges, counts 1 and 64 (prior 0): b = θ + ½log2(c) gives widths 3 apart
    # (½ log2 64 = 3); a mean of 5.5 bits is then 4 and 7.
    bits = row_bits(torch.tensor([1.0, 64.0]), torch.tensor([1.0, 1.0]), mean_bits=5.5, lo=2, hi=8, prior=1e-9)
    assert bits.tolist() == [4, 7]
    # The clamp: a mean of 8 is every row at hi; one below lo is impossible, every row at lo.
    assert row_bits(torch.tensor([1.0, 64.0]), torch.ones(2), mean_bits=8, lo=2, hi=8, prior=1).tolist() == [8, 8]
    assert row_bits(torch.tensor([1.0, 64.0]), torch.ones(2), mean_bits=2, lo=2, hi=8, prior=1).tolist() == [2, 2]


def test_good_turing_prior_is_rows_seen_once_over_rows_unseen():
    # 2 rows seen once, 3 unseen: Good-Turing's unseen mass 2/N over 3 rows = 2/3 occurrences each.
    assert good_turing_prior(torch.tensor([0.0, 0, 0, 1, 1, 5])) == pytest.approx(2 / 3)
    assert good_turing_prior(torch.tensor([0.0, 0, 3, 5])) == pytest.approx(1 / 2)    # no singleton: N1 = 1
    assert good_turing_prior(torch.tensor([2.0, 5])) == 1.0                            # nothing unseen


def test_quantize_rows_puts_each_row_on_its_own_grid():
    w = torch.randn(6, 32, generator=torch.Generator().manual_seed(0))
    bits = torch.tensor([1, 2, 4, 4, 8, 8])
    q = quantize_rows(w, bits, symmetric=False, calibration="minmax")
    for i, b in enumerate(bits.tolist()):
        assert torch.unique(q[i]).numel() <= 2 ** b
        ref = quantize_weight(w[i:i + 1], bits=b, symmetric=False, granularity="channel")[0]
        assert torch.equal(q[i:i + 1], ref)


def _bert():
    cfg = transformers.BertConfig(vocab_size=400, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=32)
    torch.manual_seed(0)
    return transformers.BertModel(cfg).eval()


def _zipf_batches(n, seed):
    g = torch.Generator().manual_seed(seed)
    p = 1.0 / torch.arange(1, 401).double()           # token i drawn with probability ~ 1 / i
    return [{"input_ids": torch.multinomial(p, 8 * 16, replacement=True, generator=g).reshape(8, 16),
             "attention_mask": torch.ones(8, 16, dtype=torch.long)} for _ in range(n)]


def _hidden_error(model, ref, data):
    with torch.no_grad():
        return sum(float((model(**b).last_hidden_state - ref(**b).last_hidden_state).pow(2).mean()) for b in data)


def test_fewer_bytes_and_less_error_than_uniform_bits_on_held_out_text(tmp_path):
    base, calib, held_out = _bert(), _zipf_batches(8, 1), _zipf_batches(4, 2)
    emb = {"include": ["type:Embedding"]}
    mixed, uniform = copy.deepcopy(base), copy.deepcopy(base)
    ns.compress_(mixed, ns.Recipe.of(ns.create("embedding_bits", bits=4.0, min_bits=2, targets=emb),
                                     finetune=ns.TrainConfig(epochs=0)), data=calib, progress=False)
    ns.compress_(uniform, ns.Recipe.of(ns.create("quantize", bits=4, calibration="mse", targets=emb),
                                       finetune=ns.TrainConfig(epochs=0)), data=calib, progress=False)
    assert _hidden_error(mixed, base, held_out) < 0.5 * _hidden_error(uniform, base, held_out)
    a, b = ns.save(mixed, tmp_path / "m.nshr"), ns.save(uniform, tmp_path / "u.nshr")
    assert a < 1.1 * b                                  # about the same bytes (the same mean width)
    loaded = ns.load(tmp_path / "m.nshr")
    for (n, p), (_, q) in zip(mixed.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(p, q), n


def test_bad_settings_and_targets_are_named():
    with pytest.raises(RecipeError, match="bits"):
        ns.create("embedding_bits", bits=9.0)
    with pytest.raises(RecipeError, match="min_bits"):
        ns.create("embedding_bits", bits=2.0, min_bits=0)
    with pytest.raises(RecipeError, match="symmetric"):
        ns.create("embedding_bits", bits=2.0, min_bits=1, symmetric=True)
    with pytest.raises(RecipeError, match="nn.Embedding"):
        ns.compress_(_bert(), ns.Recipe.of(ns.create("embedding_bits", targets={"include": ["type:Linear"]}),
                                           finetune=ns.TrainConfig(epochs=0)), data=_zipf_batches(1, 0),
                     progress=False)


def test_counting_stops_after_the_tables_and_counts_every_token():
    from netshrink.core.context import PrepareContext

    model, data = _bert(), _zipf_batches(3, 3)
    layers = []
    model.encoder.layer[0].register_forward_hook(lambda *a: layers.append(1))
    method = ns.create("embedding_bits", bits=4.0)
    tables = method.tables(model)
    counts = method.token_counts(model, tables, PrepareContext(data=data))
    ids = torch.cat([b["input_ids"].reshape(-1) for b in data])
    assert torch.equal(counts["embeddings.word_embeddings"], torch.bincount(ids, minlength=400).double())
    # position ids come as one (1, T) row per batch, broadcast over its samples: one count each
    assert counts["embeddings.position_embeddings"][:16].tolist() == [3.0] * 16
    assert len(layers) == 1                             # only the first pass went past the embeddings


def test_a_table_read_twice_in_a_pass_is_counted_both_times():
    from netshrink.core.context import PrepareContext

    class EncoderDecoder(torch.nn.Module):     # one table for both inputs, as T5's `shared`
        def __init__(self):
            super().__init__()
            self.shared = torch.nn.Embedding(50, 4)

        def forward(self, src, tgt):
            return self.shared(src).sum() + self.shared(tgt).sum()

    g = torch.Generator().manual_seed(0)
    data = [{"src": torch.randint(0, 25, (2, 5), generator=g), "tgt": torch.randint(25, 50, (2, 3), generator=g)}
            for _ in range(3)]
    model = EncoderDecoder()
    method = ns.create("embedding_bits", bits=4.0)
    counts = method.token_counts(model, method.tables(model), PrepareContext(data=data))["shared"]
    ids = torch.cat([torch.cat([b["src"].reshape(-1), b["tgt"].reshape(-1)]) for b in data])
    assert torch.equal(counts, torch.bincount(ids, minlength=50).double())
