import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    # timings and training here run on one thread (see tests/conftest.py)
    yield
