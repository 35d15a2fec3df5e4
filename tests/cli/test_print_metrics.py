"""Metric tables on the console: short per-class tables whole, long ones (ImageNet's 1,000 classes) as their 10 lowest
rows with a caption saying where the whole table is."""

from __future__ import annotations

import pytest

from lowlabel.cli.common import print_metrics


def test_short_per_class_tables_are_printed_whole(capsys: pytest.CaptureFixture) -> None:
    print_metrics({"mIoU": 50.0}, title="t", per_class={"IoU": {"cat": 40.0, "dog": None}})
    out = capsys.readouterr().out
    assert "cat" in out and "dog" in out and "lowest" not in out


def test_long_per_class_tables_show_the_ten_lowest(capsys: pytest.CaptureFixture) -> None:
    values = {f"class{i:03d}": float(i) for i in range(100)}
    values["unseen"] = None
    print_metrics({"top1": 50.0}, title="t", per_class={"top1": values})
    out = capsys.readouterr().out
    assert all(f"class{i:03d}" in out for i in range(10)) and "class010" not in out and "unseen" not in out
    assert "10 lowest of 101 classes" in out
