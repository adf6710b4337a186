"""Recipe: an ordered list of methods plus the fine-tuning budget, in TOML.

    [finetune]            # the training budget of each step's phase
    epochs = 10
    lr = 1e-3

    [[step]]
    method = "magnitude"
    sparsity = 0.9
    finetune = { epochs = 3 }   # optional: this step's own budget

A recipe with no [finetune] gets `DEFAULT_FINETUNE`, which is printed in the
resolved recipe of every run.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from netshrink.core.method import Method
from netshrink.core.session import Session
from netshrink.errors import NetshrinkError, RecipeError
from netshrink.pipeline import registry
from netshrink.train.config import TrainConfig

DEFAULT_FINETUNE = TrainConfig(epochs=5, lr=1e-3)


@dataclass
class Step:
    method: Method
    finetune: dict | None = None  # overrides of the recipe's budget for this step


@dataclass
class Recipe:
    steps: list[Step] = field(default_factory=list)
    finetune: TrainConfig = field(default_factory=lambda: DEFAULT_FINETUNE)

    # -- construction -----------------------------------------------------------
    @classmethod
    def of(cls, *methods: Method, finetune: TrainConfig | None = None) -> "Recipe":
        """`Recipe.of(create("magnitude", sparsity=0.9))`."""
        return cls([Step(m) for m in methods], finetune or DEFAULT_FINETUNE)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        if not isinstance(d, dict):
            raise RecipeError("a recipe is a table with [finetune] and [[step]] entries")
        unknown = set(d) - {"finetune", "step"}
        if unknown:
            raise RecipeError(f"recipe: unknown section(s) {sorted(unknown)}; valid: finetune, step")
        raw_steps = d.get("step", [])
        if not isinstance(raw_steps, list) or not raw_steps:
            raise RecipeError("recipe: it needs at least one [[step]] with a `method`")
        steps = []
        for i, raw in enumerate(raw_steps, 1):
            if not isinstance(raw, dict) or "method" not in raw:
                raise RecipeError(f"recipe: step {i} has no `method`")
            raw = dict(raw)
            name = raw.pop("method")
            if not isinstance(name, str):
                raise RecipeError(f"recipe: step {i}: method must be a name, got {name!r}")
            ft = raw.pop("finetune", None)
            if ft is not None:
                if not isinstance(ft, dict):
                    raise RecipeError(f"recipe: step {i}: finetune must be a table")
                _prefix(i, lambda: TrainConfig.from_dict(ft))
            method = _prefix(i, lambda: registry.get(name).from_params(raw))
            steps.append(Step(method, ft))
        return cls(steps, TrainConfig.from_dict(d.get("finetune")) if "finetune" in d else DEFAULT_FINETUNE)

    @classmethod
    def from_toml(cls, path_or_text: str | Path) -> "Recipe":
        """From a file path, or from TOML text (anything containing a newline or '[')."""
        text = str(path_or_text)
        if "\n" not in text and "[" not in text:
            p = Path(text)
            if p.is_dir():
                raise RecipeError(f"recipe {text} is a folder, not a recipe file")
            if not p.is_file():
                raise RecipeError(f"recipe file {text} does not exist")
            try:
                text = p.read_bytes().decode("utf-8")
            except UnicodeDecodeError as e:
                raise RecipeError(f"recipe {p} is not UTF-8 text (byte {e.start})") from None
            except OSError as e:
                raise RecipeError(f"recipe {p}: cannot read it ({e.strerror or e})") from None
        try:
            d = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise RecipeError(f"recipe is not valid TOML: {e}") from None
        return cls.from_dict(d)

    # -- output -----------------------------------------------------------------
    def to_dict(self) -> dict:
        steps = []
        for s in self.steps:
            d = {"method": s.method.name, **s.method.params()}
            if s.finetune:
                d["finetune"] = dict(s.finetune)
            steps.append(d)
        return {"finetune": self.finetune.to_dict(), "step": steps}

    def to_toml(self, header: str = "") -> str:
        d = _no_none(self.to_dict())
        out = [f"# {line}" for line in header.splitlines()]
        out += ["[finetune]", *(_kv(k, v) for k, v in d["finetune"].items())]
        for step in d["step"]:
            out += ["", "[[step]]", *(_kv(k, v) for k, v in step.items())]
        return "\n".join(out) + "\n"

    # -- sweeps -----------------------------------------------------------------
    def set_params(self, **kw) -> "Recipe":
        """A new recipe with fields changed: `set_params(magnitude__sparsity=0.95)`.

        The part before `__` is a method name (the first step of that method) or a
        step index (`step0__sparsity`); `finetune__epochs` sets the budget.
        """
        d = self.to_dict()
        for key, value in kw.items():
            if "__" not in key:
                raise RecipeError(f"set_params: {key!r} must look like method__field")
            owner, fname = key.split("__", 1)
            if owner == "finetune":
                d["finetune"][fname] = value
                continue
            idx = int(owner[4:]) if owner.startswith("step") and owner[4:].isdigit() else None
            if idx is None:
                idx = next((i for i, s in enumerate(d["step"]) if s["method"] == owner), None)
            if idx is None or idx >= len(d["step"]):
                raise RecipeError(f"set_params: no step named {owner!r}")
            d["step"][idx][fname] = value
        return Recipe.from_dict(d)

    def finetune_for(self, step: Step) -> TrainConfig:
        return self.finetune.replace(**step.finetune) if step.finetune else self.finetune

    @property
    def methods(self) -> list[Method]:
        return [s.method for s in self.steps]

    def start(self, model, optimizer=None, *, data=None, total_steps: int | None = None):
        """Attach every step to `model` for a user's own training loop; see Session."""
        return Session.start(self, model, optimizer, data=data, total_steps=total_steps)


def _prefix(i: int, fn):
    try:
        return fn()
    except NetshrinkError as e:
        raise RecipeError(f"step {i}: {e}") from None


def _kv(key: str, value) -> str:
    """One `key = value` line, the value as inline TOML."""
    return f"{_bare(key)} = {_inline(value)}"


def _bare(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else tomli_w.dumps({key: 0}).split(" = ")[0]


def _inline(v) -> str:
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_bare(k)} = {_inline(x)}" for k, x in v.items()) + " }" if v else "{}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_inline(x) for x in v) + "]"
    return tomli_w.dumps({"x": v}).split(" = ", 1)[1].strip()


def _no_none(x):
    if isinstance(x, dict):
        return {k: _no_none(v) for k, v in x.items() if v is not None}
    if isinstance(x, (list, tuple)):
        return [_no_none(v) for v in x]
    return x
