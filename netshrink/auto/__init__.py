"""Budget-driven automatic compression: `auto(model, data, budget=Budget(bytes=..., max_drop=...))`.

budget.py       Budget and the parsing of "200KB" / "2ms"
cost.py         per-layer candidates and their bytes from the codec; measured latency
sensitivity.py  per-layer sensitivity tables (loss probes, Fisher proxy), cached
allocate.py     multiple-choice knapsack (exact DP) and the uniform baseline
search.py       auto(): sensitivity -> allocate -> compress with fine-tuning -> verify
outputs.py      recipe.toml, choices.md, points.json, pareto.png, model.nshr
"""
from netshrink.auto.budget import Budget, parse_size, parse_time
from netshrink.auto.search import AutoResult, auto

__all__ = ["Budget", "parse_size", "parse_time", "AutoResult", "auto"]
