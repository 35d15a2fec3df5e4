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
    ssim = [run(tmp_path / f"t-s{s}", s, {"SSIM": v}) for s, v in ((0, 0.8012), (1, 0.8132))]
    one = build_result("t", "c", [RowSpec("t", "method", ssim, ["SSIM"])], repo=tmp_path, shapesworld="1.6")
    assert "| t | 0, 1 | 0.807 ± 0.008 |" in markdown_table(one)  # a [0, 1] similarity keeps three decimals


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
    ('{"study": "s", "command": "c", "commit": "x", "date": "d", "shapesworld": "1.5", "source": "a\\nb", '
     '"rows": [{"run": "r", "role": "method", "seeds": [0], "metrics": {"m": {"mean": 1, "std": 0, "values": [1]}}}]}',
     "'source' must be a one-line string"),
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
    result["source"] = "Transcribed from a recorded table."
    out = render_readme(out, {"s": result})
    assert "ShapesWorld 1.5)\n\nTranscribed from a recorded table.\n<!-- /result -->" in out


def test_a_vs_block_puts_studies_side_by_side_matching_rows_by_label(tmp_path: Path) -> None:
    a = build_result("a", "bash a.sh", [
        RowSpec("SIPE", "method", [run(tmp_path / "a1", 0, {"mIoU": 20.0}), run(tmp_path / "a2", 1, {"mIoU": 22.0})],
                ["mIoU"]),
        RowSpec("CAM", "baseline", [run(tmp_path / "a3", 0, {"mIoU": 30.0})], ["mIoU"])], repo=tmp_path,
        shapesworld="1.5")
    b = build_result("b", "bash b.sh", [
        RowSpec("CAM", "baseline", [run(tmp_path / "b1", 2, {"mIoU": 25.0, "CorLoc": 0.5})], ["mIoU", "CorLoc"]),
        RowSpec("new", "ablation", [run(tmp_path / "b2", 3, {"mIoU": 1.0})], ["mIoU"])], repo=tmp_path,
        shapesworld="1.6")
    a["source"] = "Transcribed."
    out = render_readme("<!-- result:a vs b -->\n<!-- /result -->", {"a": a, "b": b})
    assert out.splitlines()[1:9] == [
        "| run | mIoU, a | mIoU, b | CorLoc, a | CorLoc, b | seeds, a | seeds, b |",
        "|---|---|---|---|---|---|---|",
        "| SIPE | 21.0 ± 1.4 |  |  |  | 0, 1 |  |",
        "| CAM | 30.0 | 25.0 |  | 0.5 | 0 | 2 |",
        "| new |  | 1.0 |  |  |  | 3 |",
        "",
        "- a: `bash a.sh` (commit abc123, " + a["date"] + ", ShapesWorld 1.5). Transcribed.",
        "- b: `bash b.sh` (commit abc123, " + b["date"] + ", ShapesWorld 1.6)",
    ]
    assert render_readme(out, {"a": a, "b": b}) == out
    with pytest.raises(UserError, match="no benchmarks/results file for study 'c'"):
        render_readme("<!-- result:a vs c -->\n<!-- /result -->", {"a": a})


def test_the_readme_agrees_with_benchmarks_results() -> None:
    """Fails when a result file changed without `python benchmarks/results_readme.py`, or the README was edited by
    hand inside a result block."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "results_readme.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "<!-- result:" in (ROOT / "README.md").read_text()


def test_rows_name_their_method_and_config_from_the_runs(tmp_path: Path) -> None:
    """``method`` and ``config`` come from env.json (method, the --config of argv) unless the study gives them; the
    optional ``note`` and ``link`` are kept; files without these fields stay valid."""
    dirs = []
    for s in (0, 1):
        d = run(tmp_path / f"sipe-s{s}", s, {"mIoU": 20.0 + s})
        argv = ["-c", "train", "sipe", "--config", "configs/sipe/synth-full.yaml", "--seed", str(s)]
        (d / "env.json").write_text(json.dumps({"method": "sipe", "argv": argv, "git": {"commit": "abc"}}))
        dirs.append(d)
    other = run(tmp_path / "cam-s0", 0, {"mIoU": 30.0})
    (other / "env.json").write_text(json.dumps({"method": "mlcam", "argv": ["train", "mlcam", "--config=x/y/z.yaml"]}))
    result = build_result("s", "c", [RowSpec("SIPE", "method", dirs, ["mIoU"], note="why it loses", link="../R.md#a"),
                                     RowSpec("CAM", "baseline", [other], ["mIoU"], config="synth-full")],
                          repo=tmp_path, shapesworld="1.5")
    sipe, cam = result["rows"]
    assert (sipe["method"], sipe["config"], sipe["note"], sipe["link"]) == ("sipe", "synth-full", "why it loses",
                                                                            "../R.md#a")
    assert (cam["method"], cam["config"]) == ("mlcam", "synth-full") and "note" not in cam  # the study's config wins
    write_result(tmp_path / "s.json", result)
    assert read_result(tmp_path / "s.json") == result
    mixed = build_result("t", "c", [RowSpec("r", "method", [dirs[0], other], ["mIoU"])], repo=tmp_path,
                         shapesworld="1.5")
    assert "method" not in mixed["rows"][0]  # the runs disagree: no method
    with pytest.raises(UserError, match="'note' must be a one-line string"):
        build_result("t", "c", [RowSpec("r", "method", dirs, ["mIoU"], note="a\nb")], repo=tmp_path, shapesworld="1")


def test_write_result_rows_take_optional_fields() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("write_result", ROOT / "benchmarks" / "write_result.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    row = module.parse_row(["SIPE", "method", "runs/none-*::held/metrics.json", "mIoU", "J&F-Mean", "note=a b=c",
                            "link=../../README.md#x", "method=sipe"])
    assert (row.run, row.role, row.metrics, row.metrics_file) == ("SIPE", "method", ["mIoU", "J&F-Mean"],
                                                                  "held/metrics.json")
    assert (row.note, row.link, row.method, row.config) == ("a b=c", "../../README.md#x", "sipe", None)
    with pytest.raises(UserError, match="unknown field 'colour'"):
        module.parse_row(["r", "method", "g", "m", "colour=red"])
    with pytest.raises(UserError, match="needs LABEL ROLE GLOB METRIC"):
        module.parse_row(["r", "method", "g", "note=x"])


def test_result_links_name_readme_sections() -> None:
    """Every ``link`` of benchmarks/results resolves to a file, and a ``#fragment`` in a Markdown file to one of
    its headings (so the report's 'see the README' never points at a renamed section)."""
    from lowlabel.report.references import resolve_link

    folder = ROOT / "benchmarks" / "results"
    for path in sorted(folder.glob("*.json")):
        for row in read_result(path)["rows"]:
            if "link" in row and not row["link"].startswith(("http://", "https://")):
                link = resolve_link(row["link"], folder)
                assert link.href is not None, f"{path.name}: {row['link']} does not exist"
                assert "#" not in row["link"] or "section" in link.text, f"{path.name}: {row['link']}: no such heading"
