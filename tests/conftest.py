"""Shared fixtures."""

import pytest


@pytest.fixture(scope="module")
def torch_one_thread():
    """Tiny torch models: one intra-op thread is fastest and avoids contention on shared CI cores."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
