"""Cached baselines: a zoo model trained on a zoo dataset with a fixed seed.

    model = ns.zoo.baseline("lenet300_100", "mnist5k", fold=0)

The result is cached as a .nshr artifact under $NETSHRINK_CACHE (default
~/.cache/netshrink), keyed by a hash of (model, kwargs, data, fold, training config).
The same call on the same machine gives the same weights.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from netshrink.artifact import load, save
from netshrink.train.config import TrainConfig
from netshrink.train.loop import fit
from netshrink.zoo import data as zoo_data
from netshrink.zoo import models as zoo_models

# Training budgets of the baselines (mnist5k-sized data, 2 CPU cores).
BASELINE_CONFIGS = {
    "lenet300_100": TrainConfig(epochs=20, lr=1e-3),
    "mlp": TrainConfig(epochs=20, lr=1e-3),
    "lenet5": TrainConfig(epochs=15, lr=1e-3),
    "resnet_small": TrainConfig(epochs=12, lr=2e-3, weight_decay=1e-4, optimizer="adamw"),
    "densenet_small": TrainConfig(epochs=12, lr=2e-3, weight_decay=1e-4, optimizer="adamw"),
    "lstm": TrainConfig(epochs=15, lr=2e-3),
    "gru": TrainConfig(epochs=15, lr=2e-3),
}


def cache_dir() -> Path:
    root = os.environ.get("NETSHRINK_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "netshrink")
    return Path(root)


def baseline_key(model: str, data: str, fold: int, kwargs: dict, config: TrainConfig, size=None) -> str:
    blob = json.dumps({"model": model, "kwargs": kwargs, "data": data, "fold": fold, "size": size,
                       "config": config.to_dict(), "v": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def baseline(model: str, data: str, fold: int = 0, *, config: TrainConfig | None = None,
             progress: bool = True, size: int | None = None, **model_kwargs) -> nn.Module:
    """A trained zoo model, from cache if it was trained before."""
    kwargs = {**zoo_models.kwargs_for_data(model, data), **model_kwargs}
    config = config or BASELINE_CONFIGS.get(model, TrainConfig(epochs=10))
    key = baseline_key(model, data, fold, kwargs, config, size)
    path = cache_dir() / "baselines" / f"{model}-{data}-f{fold}-{key}.nshr"
    if path.exists():
        return load(path)
    train, _ = zoo_data.load(data, fold, size=size)
    torch.manual_seed(config.seed)  # the initial weights are part of the recipe
    net = zoo_models.create(model, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = path.with_suffix(".ckpt")  # a killed run resumes here
    fit(net, train, config, checkpoint=ckpt, progress=progress, desc=f"baseline {model} on {data} fold {fold}")
    save(net, path, meta={"baseline": {"model": model, "data": data, "fold": fold, "config": config.to_dict()}})
    return load(path)
