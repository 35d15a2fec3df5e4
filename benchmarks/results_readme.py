"""Render ``benchmarks/results/*.json`` into the README's ``<!-- result:<study> -->`` blocks.

    python benchmarks/results_readme.py            # rewrite README.md
    python benchmarks/results_readme.py --check    # exit 1 (and say which block) when README.md disagrees
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lowlabel.errors import UserError
from lowlabel.report.results import read_result, render_readme

ROOT = Path(__file__).resolve().parents[1]


def rendered(readme: Path, results_dir: Path) -> tuple[str, str]:
    """(the README as it is, as the result files say it should be)."""
    results = {}
    for path in sorted(results_dir.glob("*.json")):
        result = read_result(path)
        if result["study"] != path.stem:
            raise UserError(f"{path}: study {result['study']!r} does not match the file name")
        results[result["study"]] = result
    text = readme.read_text()
    return text, render_readme(text, results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    args = parser.parse_args()
    try:
        current, wanted = rendered(args.readme, args.results)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        if current != wanted:
            print(f"{args.readme} differs from {args.results}: run python benchmarks/results_readme.py",
                  file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        args.readme.write_text(wanted)
        print(f"updated {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
