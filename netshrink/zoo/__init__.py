"""Data, models and cached baselines that need no download."""
from netshrink.zoo import data, models
from netshrink.zoo.baseline import baseline

__all__ = ["data", "models", "baseline"]
