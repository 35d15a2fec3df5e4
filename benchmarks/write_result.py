"""Write one study's result file from its run folders (called at the end of the study scripts).

    python benchmarks/write_result.py --study sipe-seed-classes --command "bash ..." --out benchmarks/results \\
        --row "labels (ours, default)" method "runs/x/sipe-s*" mIoU pseudo_mIoU CorLoc \\
        --row "all (official make_cam)" ablation "runs/x/sipe-s*/seed-classes-all" mIoU pseudo_mIoU CorLoc

A row's run folders are a glob (one folder per seed, sorted), optionally ``GLOB::FILE`` to read another metrics file
inside each (a held-out evaluation's ``heldout/metrics.json``); the default is ``metrics.json``. The commit recorded
is the one the runs' ``env.json`` agree on (``--commit`` overrides it).
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

from lowlabel.data.synth import GENERATOR_VERSION
from lowlabel.errors import UserError
from lowlabel.report.results import RowSpec, build_result, write_result

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--row", nargs="+", action="append", required=True, metavar="LABEL ROLE GLOB METRIC",
                        help="label, role (method/baseline/ablation/reference), run-folder glob, metrics...")
    parser.add_argument("--commit", default="", help="the commit the runs were made with (default: HEAD)")
    args = parser.parse_args()
    specs = []
    for row in args.row:
        if len(row) < 4:
            parser.error(f"--row needs LABEL ROLE GLOB METRIC..., got {row}")
        label, role, pattern, *metrics = row
        pattern, _, metrics_file = pattern.partition("::")
        dirs = [Path(p) for p in sorted(glob.glob(pattern))]
        specs.append(RowSpec(label, role, dirs, metrics, metrics_file or "metrics.json"))
    try:
        result = build_result(args.study, args.command, specs, repo=ROOT, shapesworld=GENERATOR_VERSION)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.commit:
        result["commit"] = args.commit
    print(write_result(args.out / f"{args.study}.json", result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
