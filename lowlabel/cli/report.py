"""``lowlabel report RUN_DIR... --out DIR [--reference DIR]``: a static HTML report of finished runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def add_parser(subcommands: Any) -> None:
    """Register the ``report`` subcommand."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(
        description="Write a static HTML report (summary tables, curves, qualitative panels, failure gallery) "
        "of run folders. A folder that is not a run stands for the runs inside it. Open the printed "
        "index.html from disk; it makes no network request."
    )
    parser.add_argument("run_dirs", nargs="+", type=str, help="run folders (or folders of run folders)")
    parser.add_argument("--out", type=str, default="runs/report", help="output folder (index.html + assets/)")
    parser.add_argument("--title", type=str, default="lowlabel report", help="page title")
    parser.add_argument("--max-samples", type=int, default=6, help="images per comparison in the qualitative section")
    parser.add_argument("--max-failures", type=int, default=6, help="images per run in the failure gallery")
    parser.add_argument("--reference", type=str | None, default=None,
                        help="folder of study result files (e.g. benchmarks/results): their rows of the same method "
                        "and baseline are shown beside each comparison, with the command that reproduces them")
    subcommands.add_subcommand("report", parser, help="HTML report of run folders")


def run(cfg: Any) -> int:
    """Write the report and print the path of its ``index.html``."""
    from lowlabel.report.html import write_report

    index = write_report(
        [Path(p) for p in cfg.run_dirs], Path(cfg.out), title=cfg.title, max_samples=cfg.max_samples,
        max_failures=cfg.max_failures, reference=Path(cfg.reference) if cfg.reference else None,
    )
    print(index.resolve())
    return 0
