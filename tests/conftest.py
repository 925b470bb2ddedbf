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


def pytest_collection_modifyitems(items):
    """The viewer's window tests first: they time an idle window, and late in a full run on a 2-core
    machine Filament on llvmpipe has spun in one (1.2 to 1.8 cores idle, three full runs in a row) where
    the same tests pass alone or after the batch and viewer tests; the cause is open (the README's
    viewer notes). The other tests keep their order."""
    items.sort(key=lambda item: 0 if item.nodeid.startswith("tests/test_viz_window.py") else 1)
