"""Every shipped recipes/minilm_*.toml runs end to end on a tiny BERT from a config (the
bench runs them on all-MiniLM-L6-v2), and its result saves and loads bit-exactly."""
from pathlib import Path

import pytest
import torch
import transformers

import netshrink as ns

torch.set_num_threads(1)
RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("minilm_*.toml"))


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_minilm_recipe_runs_on_a_tiny_bert(tmp_path, path):
    # six blocks, as all-MiniLM-L6-v2: a recipe may name its layers (a per-layer map found by `auto`)
    cfg = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=6, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=32)
    torch.manual_seed(0)
    model = transformers.BertModel(cfg).eval()
    g = torch.Generator().manual_seed(1)
    data = [{"input_ids": torch.randint(1, 120, (4, 10), generator=g),
             "attention_mask": torch.ones(4, 10, dtype=torch.long)} for _ in range(3)]
    ns.compress_(model, ns.Recipe.from_toml(path.read_text()), data=data, progress=False)
    ns.save(model, tmp_path / "m.nshr")
    back = ns.load(tmp_path / "m.nshr")
    with torch.no_grad():
        assert torch.equal(model(**data[0]).last_hidden_state, back(**data[0]).last_hidden_state)
