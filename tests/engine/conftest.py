"""Engine tests run single-threaded (the shared ``one_thread`` fixture of tests/conftest.py)."""

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    """Every engine test uses ``one_thread``."""
