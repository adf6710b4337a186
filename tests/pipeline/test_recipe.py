import pytest

import netshrink as ns
from netshrink.errors import RecipeError

TOML = """
[finetune]
epochs = 3
lr = 0.01

[[step]]
method = "magnitude"
sparsity = 0.95
scope = "global"
targets = { include = ["re:.*weight"], exclude = ["fc3.weight"] }
finetune = { epochs = 1 }

[[step]]
method = "random"
sparsity = 0.5
"""


def test_toml_round_trip():
    r = ns.Recipe.from_toml(TOML)
    assert [m.name for m in r.methods] == ["magnitude", "random"]
    assert r.methods[0].sparsity == 0.95 and r.methods[0].targets.exclude == ["fc3.weight"]
    assert r.finetune.epochs == 3 and r.finetune_for(r.steps[0]).epochs == 1
    again = ns.Recipe.from_toml(r.to_toml("a header\nsecond line"))
    assert again.to_dict() == r.to_dict()


def test_header_lines_are_comments():
    text = ns.Recipe.from_toml(TOML).to_toml("cmd\nresult: x")
    assert text.startswith("# cmd\n# result: x\n")


def test_default_finetune_is_written_out():
    r = ns.Recipe.from_toml('[[step]]\nmethod = "random"\nsparsity = 0.5\n')
    assert "[finetune]" in r.to_toml() and r.finetune.epochs > 0


def test_set_params_by_method_and_index():
    r = ns.Recipe.from_toml(TOML)
    r2 = r.set_params(magnitude__sparsity=0.5, step1__sparsity=0.25, finetune__epochs=7)
    assert r2.methods[0].sparsity == 0.5 and r2.methods[1].sparsity == 0.25 and r2.finetune.epochs == 7
    assert r.methods[0].sparsity == 0.95  # the original is untouched
    with pytest.raises(RecipeError, match="no step named"):
        r.set_params(quantize__bits=4)


@pytest.mark.parametrize("text, message", [
    ('[[step]]\nmethod = "magnitud"\n', "unknown method 'magnitud'; valid methods: .*magnitude"),
    ('[[step]]\nmethod = "magnitude"\nsparsty = 0.9\n', "unknown field.*sparsty.*valid fields"),
    ('[[step]]\nmethod = "magnitude"\nsparsity = 1.5\n', "sparsity = 1.5 is out of range"),
    ('[[step]]\nmethod = "magnitude"\nsparsity = "high"\n', "sparsity = 'high' has the wrong type"),
    ('[[step]]\nmethod = "magnitude"\nscope = "everywhere"\n', "scope = 'everywhere' is not one of"),
    ('[finetune]\nepoch = 2\n[[step]]\nmethod = "random"\n', "finetune: unknown field.*epoch"),
    ('[finetune]\nlr = -1\n[[step]]\nmethod = "random"\n', "lr = -1"),
    ('[[step]\nmethod = "random"\n', "not valid TOML"),
    ('[finetune]\nepochs = 1\n', "at least one"),
    ('[[step]]\nsparsity = 0.5\n', "no `method`"),
    ('[stepp]\n', "unknown section"),
])
def test_malformed_recipes_name_the_problem(text, message):
    with pytest.raises(RecipeError, match=message):
        ns.Recipe.from_toml(text)


def test_missing_file():
    with pytest.raises(RecipeError, match="does not exist"):
        ns.Recipe.from_toml("no/such/recipe.toml")
