import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    # tiny models: one thread is fastest, and fair to the other tests (see tests/conftest.py)
    yield
