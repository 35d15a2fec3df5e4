"""Seeding and deterministic mode."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed python, numpy and torch (CPU and CUDA); optionally switch torch to deterministic algorithms.

    ``deterministic`` sets ``torch.use_deterministic_algorithms(True, warn_only=True)`` (ops without a
    deterministic implementation warn instead of failing), turns off cuDNN benchmarking and sets
    ``CUBLAS_WORKSPACE_CONFIG`` as CUDA requires.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
