"""Study result files: rows from run folders (mean, sample std, per-seed values, the runs' commit), one-line errors
for malformed files, the Markdown table, the README blocks, and the README agreeing with benchmarks/results/."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lowlabel.errors import UserError
from lowlabel.report.results import RowSpec, build_result, markdown_table, read_result, render_readme, write_result

ROOT = Path(__file__).resolve().parents[2]


def run(folder: Path, seed: int, metrics: dict[str, float], commit: str = "abc123") -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(f"trainer:\n  seed: {seed}\n")
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "env.json").write_text(json.dumps({"git": {"commit": commit, "dirty": False}}))
    return folder


def test_rows_hold_mean_sample_std_values_seeds_and_the_runs_commit(tmp_path: Path) -> None:
    dirs = [run(tmp_path / f"m-s{s}", s, {"mIoU": v, "CorLoc": 10.0}) for s, v in ((0, 20.0), (1, 22.0), (2, 27.0))]
    base = [run(tmp_path / "b-s0", 0, {"mIoU": 30.0, "CorLoc": 12.0})]
    result = build_result("toy", "bash toy.sh", [RowSpec("method", "method", dirs, ["mIoU", "CorLoc"]),
                                                 RowSpec("baseline", "baseline", base, ["mIoU"])],
                          repo=tmp_path, shapesworld="1.5")
    row = result["rows"][0]
    assert row["seeds"] == [0, 1, 2] and row["metrics"]["mIoU"]["values"] == [20.0, 22.0, 27.0]
    assert row["metrics"]["mIoU"]["mean"] == pytest.approx(23.0)
    assert row["metrics"]["mIoU"]["std"] == pytest.approx(((9 + 1 + 16) / 2) ** 0.5)  # sample std, n - 1
    assert result["rows"][1]["metrics"]["mIoU"]["std"] == 0.0 and result["commit"] == "abc123"
    write_result(tmp_path / "toy.json", result)
    assert read_result(tmp_path / "toy.json") == result
    table = markdown_table(result)
    assert table.splitlines()[0] == "| run | seeds | mIoU | CorLoc |"
    assert "| method | 0, 1, 2 | 23.0 ± 3.6 | 10.0 ± 0.0 |" in table and "| baseline | 0 | 30.0 |  |" in table


def test_runs_of_different_commits_record_the_checkout(tmp_path: Path) -> None:
    a, b = run(tmp_path / "a", 0, {"m": 1.0}, "one"), run(tmp_path / "b", 1, {"m": 2.0}, "two")
    result = build_result("t", "c", [RowSpec("r", "method", [a, b], ["m"])], repo=tmp_path, shapesworld="1.5")
    assert result["commit"] not in ("one", "two")  # not a git checkout: "unknown"


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "malformed result file (JSON"),
    ("[]", "expected a JSON object"),
    ('{"study": "s", "command": "c", "commit": "x", "date": "d", "shapesworld": "1.5", "rows": []}',
     "'rows' must be a non-empty list"),
    ('{"study": "s", "command": "c", "commit": "x", "date": "d", "shapesworld": "1.5", '
     '"rows": [{"run": "r", "role": "winner", "seeds": [0], "metrics": {}}]}', "role 'winner'"),
    ('{"study": "s", "command": "c", "commit": "x", "date": "d", "shapesworld": "1.5", '
     '"rows": [{"run": "r", "role": "method", "seeds": [0], "metrics": {"m": {"mean": 1}}}]}', "needs mean, std"),
])
def test_malformed_result_files_are_one_line_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises(UserError, match=re.escape(message)) as err:
        read_result(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_missing_metric_and_unclosed_readme_block_are_errors(tmp_path: Path) -> None:
    d = run(tmp_path / "r", 0, {"mIoU": 1.0})
    with pytest.raises(UserError, match="no metric 'CorLoc'"):
        build_result("s", "c", [RowSpec("r", "method", [d], ["CorLoc"])], repo=tmp_path, shapesworld="1.5")
    with pytest.raises(UserError, match="not closed"):
        render_readme("a <!-- result:s --> b", {"s": {}})
    with pytest.raises(UserError, match="no benchmarks/results file for study 'x'"):
        render_readme("<!-- result:x -->\\n<!-- /result -->", {})


def test_readme_blocks_are_replaced_and_the_rest_kept(tmp_path: Path) -> None:
    d = run(tmp_path / "r", 4, {"m": 2.5})
    result = build_result("s", "bash s.sh", [RowSpec("r", "method", [d], ["m"])], repo=tmp_path, shapesworld="1.5")
    text = "intro\n<!-- result:s -->\nstale table\n<!-- /result -->\noutro\n"
    out = render_readme(text, {"s": result})
    assert out.startswith("intro\n<!-- result:s -->\n| run | seeds | m |") and out.endswith("<!-- /result -->\noutro\n")
    assert "stale table" not in out and "`bash s.sh` (commit abc123" in out
    assert render_readme(out, {"s": result}) == out  # idempotent


def test_the_readme_agrees_with_benchmarks_results() -> None:
    """Fails when a result file changed without `python benchmarks/results_readme.py`, or the README was edited by
    hand inside a result block."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results_readme.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "<!-- result:" in (ROOT / "README.md").read_text()
