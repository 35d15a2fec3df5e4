"""Write one study's result file from its run folders (called at the end of the study scripts).

    python benchmarks/write_result.py --study sipe-seed-classes --command "bash ..." --out benchmarks/results \\
        --row "labels (ours, default)" method "runs/x/sipe-s*" mIoU pseudo_mIoU CorLoc \\
        --row "all (official make_cam)" ablation "runs/x/sipe-s*/seed-classes-all" mIoU pseudo_mIoU CorLoc

A row's run folders are a glob (one folder per seed, sorted), optionally ``GLOB::FILE`` to read another metrics file
inside each (a held-out evaluation's ``heldout/metrics.json``); the default is ``metrics.json``. The commit recorded
is the one the runs' ``env.json`` agree on (``--commit`` overrides it).

A row may end with ``KEY=VALUE`` words for the optional row fields of ``lowlabel/report/results.py``: ``method=``
and ``config=`` (default: what the runs' ``env.json`` says), ``note=`` (one line: why the row reads as it does, shown
by ``lowlabel report --reference`` where a method loses to its baseline) and ``link=`` (the README section, relative
to the result file)::

    --row "SIPE" method "runs/wsss-full/sipe-s*" mIoU pseudo_mIoU CorLoc \\
        "note=its seeds call the object bodies background (CAM fires on the marking only)" \\
        "link=../../README.md#wsss-sipe-vs-multi-label-cam-shapesworld-v15-voc-3-seeds"
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

from lowlabel.data.synth import GENERATOR_VERSION
from lowlabel.errors import UserError
from lowlabel.report.results import OPTIONAL_ROW_FIELDS, RowSpec, build_result, write_result

ROOT = Path(__file__).resolve().parents[1]


def parse_row(words: list[str]) -> RowSpec:
    """A ``--row`` (LABEL ROLE GLOB METRIC... [KEY=VALUE...]) as a row spec.

    Raises:
        UserError: fewer than four words, or an unknown KEY.
    """
    fields: dict[str, str] = {}
    while words and "=" in words[-1] and words[-1].split("=", 1)[0].isidentifier():
        key, value = words[-1].split("=", 1)
        if key not in OPTIONAL_ROW_FIELDS:
            raise UserError(f"--row {words[0]!r}: unknown field {key!r} (known: {', '.join(OPTIONAL_ROW_FIELDS)})")
        fields.setdefault(key, value)
        words = words[:-1]
    if len(words) < 4:
        raise UserError(f"--row needs LABEL ROLE GLOB METRIC... [KEY=VALUE...], got {words}")
    label, role, pattern, *metrics = words
    pattern, _, metrics_file = pattern.partition("::")
    dirs = [Path(p) for p in sorted(glob.glob(pattern))]
    return RowSpec(label, role, dirs, metrics, metrics_file or "metrics.json", **fields)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--row", nargs="+", action="append", required=True, metavar="LABEL ROLE GLOB METRIC",
                        help="label, role (method/baseline/ablation/reference), run-folder glob, metrics..., then "
                        "optional method=, config=, note=, link=")
    parser.add_argument("--commit", default="", help="the commit the runs were made with (default: HEAD)")
    args = parser.parse_args()
    try:
        specs = [parse_row(row) for row in args.row]
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
