import os

import pytest
import torch

os.environ.setdefault("NETSHRINK_PROGRESS", "0")


@pytest.fixture(autouse=True)
def _seed_and_cache(tmp_path_factory, monkeypatch):
    """Fixed seeds; baselines cached in a per-session temp folder, never the user's."""
    torch.manual_seed(0)
    cache = tmp_path_factory.getbasetemp() / "netshrink-cache"
    monkeypatch.setenv("NETSHRINK_CACHE", str(cache))
    yield


@pytest.fixture(scope="session")
def digits():
    from netshrink.zoo import data

    return data.load("digits", fold=0)
