"""Fixtures shared by the test modules."""
import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny networks run faster on one thread, and immune to a busy machine's thread contention."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
