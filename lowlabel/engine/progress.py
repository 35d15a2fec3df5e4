"""A rich progress bar for the training loop: steps/s, ETA and the latest losses."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any


def _speed_column() -> Any:
    """A rich column showing optimizer steps per second."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class SpeedColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f} steps/s" if speed else "-- steps/s", style="cyan")

    return SpeedColumn()


class TrainProgress:
    """Progress display; silent when ``enabled`` is False or stdout is not a terminal.

    Args:
        total: the number of optimizer steps.
        start: the step the run starts (or resumes) at.
        enabled: None = on when stdout is a TTY; False = off; True = on when stdout is a TTY.
        quiet: print nothing at all (ranks other than 0); otherwise :meth:`print` lines still appear
            without the bar.
    """

    def __init__(self, *, total: int, start: int, enabled: bool | None = None, description: str = "train",
                 quiet: bool = False):
        self.enabled = sys.stdout.isatty() and enabled is not False and not quiet
        self.quiet = quiet
        self._progress: Any = None
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), _speed_column(),
            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[losses]}"),
        )
        self._task = self._progress.add_task(description, total=total, completed=start, losses="")
        self._progress.start()

    def update(self, step: int, values: Mapping[str, float] | None = None) -> None:
        if self._progress is None:
            return
        fields = {}
        if values:
            shown = [(k, v) for k, v in values.items() if not k.startswith("lr/")][:4]
            fields["losses"] = " ".join(f"{k}={v:.4g}" for k, v in shown)
        self._progress.update(self._task, completed=step, **fields)

    def print(self, message: str) -> None:
        """A line above the bar (plain stdout when the bar is off but output is wanted)."""
        if self._progress is not None:
            self._progress.console.print(message, markup=False, highlight=False)  # "[val]" stays text
        elif not self.quiet:
            print(message, flush=True)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
