"""The progress bar is on only for a terminal and never with progress=False."""

import io
import sys

from lowlabel.engine.progress import TrainProgress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_when_not_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert not TrainProgress(total=5, start=0).enabled


def test_on_for_a_terminal_unless_disabled(monkeypatch):
    fake = FakeTTY()
    monkeypatch.setattr(sys, "stdout", fake)
    assert not TrainProgress(total=5, start=0, enabled=False).enabled
    bar = TrainProgress(total=5, start=2, enabled=None)
    assert bar.enabled
    bar.update(3, {"loss/model": 0.25, "lr/model": 0.1})
    bar.close()
