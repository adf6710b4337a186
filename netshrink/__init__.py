"""netshrink: compress trained PyTorch networks into models that are measurably
smaller on disk and faster to run.

    import netshrink as ns
    train, test = ns.zoo.data.load("mnist5k", fold=0)
    model = ns.zoo.baseline("lenet300_100", "mnist5k", fold=0)
    ns.compress_(model, ns.Recipe.from_toml("recipes/deep_compression.toml"), data=train)
    # or a recipe in code: ns.Recipe.of(ns.create("magnitude", sparsity=0.9), finetune=ns.TrainConfig(epochs=3))
    print(ns.measure(model, test))
    ns.save(model, "lenet.nshr")
"""
from netshrink import zoo
from netshrink.artifact import load, save
from netshrink import auto   # callable: ns.auto(model, data, budget=...) (see netshrink/auto/__init__.py)
from netshrink.auto import AutoResult, Budget
from netshrink.pipeline.compress import Run, compress_, run_recipe
from netshrink.core.method import Method
from netshrink.pipeline.recipe import Recipe, Step
from netshrink.pipeline.registry import all_methods, create, register, unregister
from netshrink.core.targets import PerLayer, Site, Targets, select
from netshrink.errors import ArtifactError, NetshrinkError, RecipeError, TargetError
from netshrink.measure.report import Report, measure
from netshrink.train.config import TrainConfig
from netshrink.train.loop import evaluate, fit

__version__ = "0.1.0"

__all__ = [
    "zoo", "auto", "Budget", "AutoResult", "load", "save", "compress_", "run_recipe", "Run", "Method", "Recipe", "Step", "all_methods", "create",
    "register", "unregister", "PerLayer", "Site", "Targets", "select", "ArtifactError", "NetshrinkError", "RecipeError", "TargetError",
    "Report", "measure", "TrainConfig", "evaluate", "fit",
]
