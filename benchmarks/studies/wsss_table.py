"""The WSSS study's table (README, Results) from the run folders of ``benchmarks/studies/wsss_full.sh``.

Reads ``<out>/<name>-s<seed>/metrics.json`` of every finished run (a ``DONE`` file) and prints a Markdown table:
seed mIoU, pseudo-mask mIoU and CorLoc on ``train`` for CAM, SIPE and the SIPE ablations, and the val mIoU of
DeepLabV3 trained on CAM's and on SIPE's pseudo masks; mean ± sample std over the seeds found, with the seeds listed.

Usage: python benchmarks/studies/wsss_table.py [OUT=runs/wsss-full]
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROWS = (  # (run name, label); "seg-*" runs fill the segmentation column, the others the seed-stage columns
    ("mlcam", "multi-label CAM (background threshold searched on val)"),
    ("sipe", "SIPE"),
    ("sipe-nogsc", "SIPE without the GSC loss (`--sipe.use_gsc false`)"),
    ("sipe-nobgproto", "SIPE without the background prototype (`--sipe.use_bg_prototype false`)"),
    ("seg-mlcam", "DeepLabV3 on CAM's pseudo masks"),
    ("seg-sipe", "DeepLabV3 on SIPE's pseudo masks"),
)
COLUMNS = (  # (header, metrics.json key, for the seg-* rows)
    ("seed mIoU (train)", "mIoU", False),
    ("pseudo-mask mIoU (train)", "pseudo_mIoU", False),
    ("CorLoc (train)", "CorLoc", False),
    ("segmentation mIoU (val)", "mIoU", True),
)


def cell(values: list[float]) -> str:
    """``"37.0 ± 0.8"`` (sample std) for several values, the value for one, an em dash for none."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.fmean(values):.1f} ± {statistics.stdev(values):.1f}"


def collect(out: Path, name: str) -> dict[int, dict]:
    """``{seed: metrics}`` of the finished runs ``<out>/<name>-s<seed>``."""
    found = {}
    for run in sorted(out.glob(f"{name}-s*")):
        suffix = run.name[len(name) + 2:]
        if suffix.isdigit() and (run / "DONE").is_file() and (run / "metrics.json").is_file():
            found[int(suffix)] = json.loads((run / "metrics.json").read_text())
    return found


def table(out: Path) -> str:
    lines = ["| run | seeds | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---|---|" + "---|" * len(COLUMNS)]
    for name, label in ROWS:
        runs = collect(out, name)
        if not runs:
            continue
        seg = name.startswith("seg-")
        cells = [cell([float(m[key]) for m in runs.values() if key in m]) if for_seg == seg else ""
                 for _, key, for_seg in COLUMNS]
        lines.append(f"| {label} | {', '.join(map(str, sorted(runs)))} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/wsss-full")))
