import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    # The 2 cores are shared: one thread avoids oversubscription stalls (30x slower).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
