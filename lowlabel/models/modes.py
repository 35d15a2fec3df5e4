"""Switching networks into inference mode and back, in one place (evaluation, prediction)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(nets: Iterable[nn.Module]) -> Iterator[None]:
    """Every module of ``nets`` in eval mode, without gradients; each module's train/eval flag is restored after
    (a frozen teacher stays in eval mode, a network being trained returns to training mode)."""
    nets = list(nets)
    modes = [(m, m.training) for net in nets for m in net.modules()]
    for net in nets:
        net.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        for module, training in modes:
            module.training = training
