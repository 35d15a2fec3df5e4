"""Pieces shared by the ``train``, ``evaluate`` and ``predict`` commands."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lowlabel.errors import UserError


def selected_method(argv: Sequence[str], command: str) -> str | None:
    """The token after ``command`` in ``argv`` (the method name), if any."""
    argv = list(argv)
    if command not in argv:
        return None
    i = argv.index(command) + 1
    return argv[i] if i < len(argv) and not argv[i].startswith("-") else None


def method_help(name: str, module_path: str) -> str:
    return f"{name} (module {module_path})"


def check_method(name: str) -> Any:
    """The method module of ``name``; ``UserError`` listing the known methods otherwise."""
    from lowlabel.methods import METHODS, method_module

    if name not in METHODS:
        known = ", ".join(sorted(METHODS)) or "(none registered yet)"
        raise UserError(f"unknown method {name!r}; known methods: {known}")
    return method_module(name)


def default_run_dir(method: str, root: Path = Path("runs")) -> Path:
    """``runs/<method>/<YYYYmmdd-HHMMSS>/`` (with ``-2``, ``-3``... if that folder exists)."""
    base = root / method / time.strftime("%Y%m%d-%H%M%S")
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def latest_run(method: str, root: Path = Path("runs")) -> Path | None:
    """The most recently modified ``runs/<method>/*`` folder that has ``checkpoints/last.ckpt``."""
    folder = root / method
    if not folder.is_dir():
        return None
    runs = [p for p in folder.iterdir() if (p / "checkpoints" / "last.ckpt").is_file()]
    return max(runs, key=lambda p: (p / "checkpoints" / "last.ckpt").stat().st_mtime) if runs else None


def is_rank_zero() -> bool:
    """False on the non-zero ranks of a distributed run (they should stay quiet)."""
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


MAX_CLASS_ROWS = 30  # longer per-class tables (ImageNet's 1,000 classes) show their lowest rows only


def print_metrics(metrics: Mapping[str, Any], *, title: str, per_class: Mapping[str, Mapping[str, Any]] | None = None
                  ) -> None:
    """A rich table of metric values (and per-class tables) on stdout. A per-class table of more than
    :data:`MAX_CLASS_ROWS` classes shows the 10 lowest values; the whole table is in ``eval/<split>/per_class.json``."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(str(key), _fmt(value))
    console.print(table)
    for metric, values in (per_class or {}).items():
        rows = list(values.items())
        caption = None
        if len(rows) > MAX_CLASS_ROWS:
            rows = sorted((r for r in rows if r[1] is not None), key=lambda r: r[1])[:10]
            caption = f"the 10 lowest of {len(values)} classes; all in eval/<split>/per_class.json"
        sub = Table(title=f"{metric} per class")
        sub.add_column("class")
        sub.add_column(metric, justify="right")
        for name, value in rows:
            sub.add_row(str(name), _fmt(value))
        console.print(sub)
        if caption:
            console.print(caption, markup=False, highlight=False)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "-" if value is None else str(value)
