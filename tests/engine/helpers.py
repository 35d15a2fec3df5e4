"""Shared helpers for the engine tests."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path
from typing import Any

import torch

from tests.toy_gan import GanConfig
from tests.toy_method import ToyConfig

ROOT = Path(__file__).resolve().parents[2]


def toy_config(**sections: dict) -> ToyConfig:
    """A CPU toy config; ``sections`` override fields, e.g. ``trainer={"max_steps": 4}``."""
    return _replace_sections(ToyConfig(), sections)


def gan_config(**sections: dict) -> GanConfig:
    """A CPU toy GAN config; ``sections`` override fields, e.g. ``optim_d={"lr": 0.1}``."""
    return _replace_sections(GanConfig(), sections)


def _replace_sections(cfg: Any, sections: dict[str, dict]) -> Any:
    cfg.trainer.accelerator = "cpu"
    for name, values in sections.items():
        part = getattr(cfg, name)
        setattr(cfg, name, dataclasses.replace(part, **values))
    return cfg


def read_csv(path: Path) -> list[tuple[int, str, float]]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["step", "key", "value"]
    return [(int(s), k, float(v)) for s, k, v in rows[1:]]


def assert_same(a: Any, b: Any, where: str = "") -> None:
    """Nested dicts/lists/tuples of tensors and plain values are equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, (where, a, b)
