"""Engine tests run single-threaded (deterministic CPU kernels, no oversubscription on a 2-core machine)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
