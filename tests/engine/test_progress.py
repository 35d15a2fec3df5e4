"""The progress bar: on only for a terminal and never with progress=False; it shows the step count, the
losses (not the learning rates) and an ETA; print() lines reach the user with or without the bar, and
ranks other than 0 print nothing."""

import io
import sys

from lowlabel.engine.progress import TrainProgress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_when_not_a_terminal(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    bar = TrainProgress(total=5, start=0)
    assert not bar.enabled
    bar.update(1, {"loss/model": 0.5})
    bar.print("evaluated at step 1")
    bar.close()
    assert out.getvalue() == "evaluated at step 1\n"  # no bar, no control codes: only the line


def test_on_for_a_terminal_shows_steps_losses_and_eta(monkeypatch):
    fake = FakeTTY()
    monkeypatch.setattr(sys, "stdout", fake)
    assert not TrainProgress(total=5, start=0, enabled=False).enabled
    bar = TrainProgress(total=5, start=2, enabled=None, description="train cam")
    assert bar.enabled
    bar.update(3, {"loss/model": 0.25, "lr/model": 0.1})
    bar.print("evaluated at step 3 [val] [bold]")
    bar.close()
    text = fake.getvalue()
    assert "train cam" in text and "3/5" in text and "ETA" in text and "steps/s" in text
    assert "loss/model=0.25" in text and "lr/model" not in text
    assert "evaluated at step 3 [val] [bold]" in text  # printed as given: no rich markup, no highlighting


def test_quiet_rank_prints_nothing(monkeypatch):
    fake = FakeTTY()
    monkeypatch.setattr(sys, "stdout", fake)
    bar = TrainProgress(total=5, start=0, quiet=True)
    assert not bar.enabled
    bar.update(2, {"loss/model": 1.0})
    bar.print("not shown")
    bar.close()
    assert fake.getvalue() == ""
