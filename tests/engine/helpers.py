"""Shared helpers for the engine tests."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from tests.toy_method import ToyConfig

ROOT = Path(__file__).resolve().parents[2]


def toy_config(**sections: dict) -> ToyConfig:
    """A CPU toy config; ``sections`` override fields, e.g. ``trainer={"max_steps": 4}``."""
    cfg = ToyConfig()
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
