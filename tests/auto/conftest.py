import pytest
import torch


@pytest.fixture(scope="module", autouse=True)
def _one_thread_per_module():
    """One intra-op thread from the module's first fixture on: the searches here run in
    module-scoped fixtures, which a function-scoped `one_thread` (tests/conftest.py) would
    reach too late. Tiny ops on a shared 2-core machine: two threads each are ~30x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
