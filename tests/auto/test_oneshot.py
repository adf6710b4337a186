"""ns.auto's one-shot search (gptq bits per Linear, embedding_bits widths per table, no
fine-tuning) on a tiny BERT: the saved file meets the byte budget, the written recipe
replays to the same weights, the choices follow the probes, an impossible budget is one
clear message before any probe."""
import copy

import pytest
import torch

from netshrink import Recipe, compress_, save
from netshrink.auto import Budget, auto
from netshrink.auto import oneshot
from netshrink.auto.cost import file_bytes
from netshrink.errors import NetshrinkError

transformers = pytest.importorskip("transformers")

FAST = dict(methods=["gptq", "embedding_bits"], metric="fidelity_cosine", calib_size=16, samples=16, calib_batch=8,
            gptq_bits=(3, 5, 8), embedding_bits=(2, 4, 8), explore=0, progress=False, cache=False)


def _bert():
    cfg = transformers.BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=32)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    return transformers.BertModel(cfg).eval()


def _batches(n, seed):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(4, 99, (8, 12), generator=g),
             "attention_mask": torch.ones(8, 12, dtype=torch.long)} for _ in range(n)]


@pytest.fixture(scope="module")
def bert():
    return _bert(), _batches(2, 1), _batches(1, 2)


@pytest.fixture(scope="module")
def searched(bert):
    net, calib, held = bert
    budget = int(0.45 * file_bytes(net))
    return budget, auto(net, calib, Budget(bytes=budget, max_drop=0.05), eval_data=held, compare_uniform=True,
                        **FAST)


def test_saved_bytes_meet_the_budget_and_the_recipe_replays(bert, searched, tmp_path):
    net, calib, held = bert
    budget, res = searched
    assert res.metric == "fidelity_cosine" and [p.label for p in res.points] == ["auto", "uniform"]
    for p in res.points:
        assert p.bytes <= budget
        assert save(res.point_models[p.label], tmp_path / f"{p.label}.nshr") == p.bytes   # the verified file
    assert res.met, res.message
    kinds = {c.method for c in res.best.choices.values()}
    assert kinds == {"gptq", "embedding_bits"}
    # one gptq step (per-layer bits) and one embedding_bits step per table, no fine-tuning
    names = [s.method.name for s in res.recipe.steps]
    assert names == ["gptq"] + ["embedding_bits"] * 3 and res.recipe.finetune.epochs == 0
    gptq = res.recipe.steps[0].method
    assert {k: v for k, v in gptq.per_layer.items()} == {
        k: c.bits for k, c in res.best.choices.items() if c.method == "gptq"}
    again = copy.deepcopy(net)
    compress_(again, Recipe.from_toml(res.recipe.to_toml()), data=calib, progress=False)
    ref = res.model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in again.state_dict().items())
    res.write(tmp_path / "run", command="test")
    assert "gptq" in (tmp_path / "run/choices.md").read_text() and (tmp_path / "run/pareto.png").is_file()


def test_the_search_spends_bytes_where_the_probes_say_they_matter(searched):
    _, res = searched
    tables = {t.name: t for t in res.tables}
    for name, c in res.best.choices.items():
        t = tables[name]
        assert len(t.bytes) == len(t.loss) == len(t.fisher) == len(t.choices) == 3
    # the pooler never reaches last_hidden_state: no damage at any width, so its cheapest candidate
    pooler = tables["pooler.dense.weight"]
    assert max(abs(x) for x in pooler.loss) < 1e-9
    assert res.best.choices["pooler.dense.weight"] == pooler.choices[pooler.bytes.index(min(pooler.bytes))]
    # the knapsack's predicted damage is never above the uniform allocation's at the same room
    costs, damage = [t.bytes for t in res.tables], [t.loss for t in res.tables]
    cap = sum(t.bytes[1] for t in res.tables)
    from netshrink.auto import allocate
    k = allocate.knapsack(costs, damage, cap)
    u = allocate.uniform(costs, damage, cap, oneshot.uniform_options(res.tables))
    assert allocate.total(damage, k) <= allocate.total(damage, u) + 1e-12


def test_impossible_budget_is_one_clear_error_before_any_probe(bert, monkeypatch):
    net, calib, held = bert

    def no_probe(*a, **k):
        raise AssertionError("probed")
    monkeypatch.setattr(oneshot, "probe", no_probe)
    with pytest.raises(NetshrinkError, match="size budget 2,000 bytes cannot be met"):
        auto(net, calib, Budget(bytes=2000, max_drop=0.01), eval_data=held, **FAST)


def test_oneshot_methods_refuse_fine_tuned_ones_and_latency(bert):
    net, calib, held = bert
    kw = {k: v for k, v in FAST.items() if k != "methods"}
    with pytest.raises(NetshrinkError, match="alone; not with prune"):
        auto(net, calib, Budget(bytes=10_000), eval_data=held, methods=["gptq", "prune"], **kw)
    with pytest.raises(NetshrinkError, match="size budget only"):
        auto(net, calib, Budget(bytes=10_000, latency_ms=1.0), eval_data=held, methods=["gptq"], **kw)


def test_cli_runs_the_oneshot_search_on_a_transformers_folder(tmp_path):
    from netshrink import cli
    from tests.user import models as M

    M.bert().save_pretrained(tmp_path / "bert")
    size = int(0.5 * file_bytes(M.bert()))
    rc = cli.main(["auto", "--model", f"hf:{tmp_path / 'bert'}", "--data", "tests.user.models:token_batches",
                   "--methods", "gptq,embedding_bits", "--metric", "fidelity_cosine", "--max-drop", "0.5",
                   "--size", f"{size}B", "--calib-size", "16", "--explore", "0", "--out", str(tmp_path / "x")])
    assert rc == 0
    text = (tmp_path / "x/recipe.toml").read_text()
    assert 'method = "gptq"' in text and 'method = "embedding_bits"' in text
    assert "netshrink compress --model hf:" in text            # the command that replays it
    assert (tmp_path / "x/model.nshr").stat().st_size <= size
