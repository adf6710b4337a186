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


@pytest.fixture
def one_thread():
    """One intra-op thread for the test (the 2 cores are shared: oversubscription stalls
    timing-sensitive tests 30x). Folders that need it use it from their conftest."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
