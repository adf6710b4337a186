"""Budget-driven automatic compression: `ns.auto(model, data, budget=ns.Budget(bytes=..., max_drop=...))`.

budget.py       Budget and the parsing of "200KB" / "2ms"
cost.py         per-layer candidates and their bytes from the codec; measured latency
sensitivity.py  per-layer sensitivity tables (loss probes, Fisher proxy), cached
allocate.py     multiple-choice knapsack (exact DP) and the uniform baseline
search.py       auto(): sensitivity -> allocate -> compress with fine-tuning -> verify
outputs.py      recipe.toml, choices.md, points.json, pareto.png, model.nshr

`ns.auto` is this package, made callable (it calls `search.auto`), so that both
`ns.auto(model, ...)` and `import netshrink.auto.search` work: a function of the same
name bound in `netshrink` would hide the package's submodules.
"""
import sys
import types

from netshrink.auto.budget import Budget, parse_size, parse_time
from netshrink.auto.search import AutoResult, auto

__all__ = ["Budget", "parse_size", "parse_time", "AutoResult", "auto"]


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs) -> AutoResult:
        return auto(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
