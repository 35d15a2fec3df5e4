"""The summary's truth at a glance: single-seed comparisons labelled "not a comparison" with their budget and seeds,
reference study rows (``--reference DIR``) beside the comparison of the same method and baseline, the losing line
with the study's note and README link, and one-line errors for a bad reference folder."""

from __future__ import annotations

import json
import statistics
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from lowlabel.cli.main import main
from lowlabel.report.html import write_report
from lowlabel.report.references import github_anchor, load_references, resolve_link
from lowlabel.report.tables import AHEAD, BEHIND, LEVEL, ONE_SEED, Stat, reading

SECTION = "WSSS: SIPE vs multi-label CAM (ShapesWorld v1.5 `voc/`, 3 seeds)"
ANCHOR = "wsss-sipe-vs-multi-label-cam-shapesworld-v15-voc-3-seeds"  # what GitHub makes of SECTION, by hand
WHY = "its seeds call the object bodies background, as plain CAM fires on the marking only"


def row(run: str, role: str, values: dict[str, list[float]], **extra: str) -> dict[str, Any]:
    """A result-file row over seeds 0..n-1 (mean and sample std computed here)."""
    n = len(next(iter(values.values())))
    metrics = {k: {"mean": statistics.mean(v), "std": statistics.stdev(v), "values": v} for k, v in values.items()}
    return {"run": run, "role": role, **extra, "seeds": list(range(n)), "metrics": metrics}


def result_file(folder: Path, study: str, rows: list[dict[str, Any]], command: str = "bash study.sh") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "study": study,
        "command": command,
        "commit": "0123456789abcdef",
        "date": "2026-12-01",
        "shapesworld": "1.5",
        "rows": rows,
    }
    path = folder / f"{study}.json"
    path.write_text(json.dumps(data, indent=1))
    return path


WSOL_DA = [52.1, 53.2, 54.1]
WSOL_CAM = [45.0, 42.5, 47.9]
WSSS_SIPE = [26.0, 27.1, 26.8]
WSSS_CAM = [37.0, 38.6, 37.2]


def references(tmp_path: Path) -> Path:
    """A repository-like tree: README.md with the WSSS section, results/ with a winning, a losing and an old file."""
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "README.md").write_text(f"# lowlabel\n\n## Results\n\n### {SECTION}\n\ntext\n")
    folder = tmp_path / "repo" / "results"
    result_file(
        folder,
        "wsol-full",
        [
            row(
                "DA-WSOL",
                "method",
                {"MaxBoxAccV2": WSOL_DA, "PxAP": [54.0, 54.2, 54.5]},
                method="da_wsol",
                config="synth-full",
            ),
            row(
                "CAM",
                "baseline",
                {"MaxBoxAccV2": WSOL_CAM, "PxAP": [51.0, 52.0, 51.1]},
                method="cam",
                config="synth-full",
            ),
            row("DA-WSOL without the Universum", "ablation", {"MaxBoxAccV2": [40.0, 41.0, 42.0]}, method="da_wsol"),
        ],
        command="bash benchmarks/studies/wsol_full.sh",
    )
    result_file(
        folder,
        "wsss-full",
        [
            row("multi-label CAM", "baseline", {"mIoU": WSSS_CAM}, method="mlcam", config="synth-full"),
            row(
                "SIPE",
                "method",
                {"mIoU": WSSS_SIPE},
                method="sipe",
                config="synth-full",
                note=WHY,
                link=f"../README.md#{ANCHOR}",
            ),
        ],
    )
    result_file(folder, "old-format", [row("SIPE", "method", {"mIoU": [1.0, 2.0]})])  # no method field: no match
    return folder


class Rows(HTMLParser):
    """The headline table's rows: (class, cell texts, hrefs)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[str, list[str], list[str]]] = []
        self.inside = False
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self.inside = a.get("class") == "headline"
        elif self.inside and tag == "tr":
            self.rows.append((a.get("class") or "", [], []))
        elif self.inside and tag == "td":
            self.cell = []
        elif self.inside and tag == "a":
            self.rows[-1][2].append(a.get("href") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None:
            self.rows[-1][1].append("".join(self.cell))
            self.cell = None
        elif tag == "table":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def headline(index: Path) -> list[tuple[str, list[str], list[str]]]:
    parser = Rows()
    parser.feed(index.read_text(encoding="utf-8"))
    return [r for r in parser.rows if r[1]]  # the header row has no td


def smoke_runs(fake_run) -> None:  # noqa: ANN001 (pytest fixture)
    """One seed of each at the synth-quick budgets (40 and 60 steps) and the demo's headline numbers of issue 20."""
    for name, value, steps, kind in (
        ("cam", 59.17, 40, "localization"),
        ("da_wsol", 56.67, 40, "localization"),
        ("mlcam", 19.23, 60, "segmentation"),
        ("sipe", 15.14, 60, "segmentation"),
    ):
        key = "MaxBoxAccV2" if kind == "localization" else "mIoU"
        fake_run(
            name,
            method=name,
            metrics={key: value},
            kind=kind,
            config_extra={"trainer": {"max_steps": steps, "seed": 0}},
        )


def text(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def test_reference_rows_follow_the_comparison_of_the_same_method_and_baseline(fake_run, tmp_path: Path) -> None:
    smoke_runs(fake_run)
    folder = references(tmp_path)
    index = write_report([tmp_path / "runs"], tmp_path / "out", reference=folder)
    rows = headline(index)
    assert [cls for cls, _, _ in rows] == [
        "run one-seed",
        "reference ahead",
        "reference-source",
        "run one-seed",
        "reference behind",
        "reference-source",
        "losing",
    ]
    # da_wsol vs cam: the smoke row, then wsol-full's DA-WSOL and CAM rows (not its ablation) on MaxBoxAccV2
    assert rows[0][1][:5] == ["da_wsol vs cam", "MaxBoxAccV2", "59.17", "56.67", "-2.50"]
    ref = rows[1][1]
    delta = statistics.mean(WSOL_DA) - statistics.mean(WSOL_CAM)
    assert ref == [
        "reference: wsol-full",
        "MaxBoxAccV2",
        text(WSOL_CAM),
        text(WSOL_DA),
        f"{delta:+.2f}",
        "3 seeds (0, 1, 2)",
        "synth-full config, ShapesWorld 1.5",
        "method ahead by more than twice the seed std",
    ]
    (source,) = rows[2][1]
    assert source == (
        "DA-WSOL vs CAM. Reproduce: bash benchmarks/studies/wsol_full.sh (commit 0123456, 2026-12-01; wsol-full.json)."
    )
    # sipe vs mlcam: the reference shows SIPE losing, with the note and the README section
    assert rows[4][1][:4] == ["reference: wsss-full", "mIoU", text(WSSS_CAM), text(WSSS_SIPE)]
    (losing,) = rows[6][1]
    gap = statistics.mean(WSSS_CAM) - statistics.mean(WSSS_SIPE)
    readme = tmp_path / "repo" / "README.md"
    assert losing == (
        f"In the reference study wsss-full, sipe loses to mlcam by {gap:.1f} mIoU. Why: {WHY}. "
        f"See README.md, section “{SECTION.replace('`', '')}”."
    )
    assert rows[6][2] == [f"{readme.resolve().as_uri()}#{ANCHOR}"]
    html = index.read_text(encoding="utf-8")
    assert f"read from <code>{folder.resolve()}</code> (old-format.json, wsol-full.json, wsss-full.json)" in html


def test_single_seed_comparisons_say_budget_seeds_and_not_a_comparison(fake_run, tmp_path: Path) -> None:
    smoke_runs(fake_run)
    index = write_report([tmp_path / "runs"], tmp_path / "out")
    rows = headline(index)
    assert [cls for cls, _, _ in rows] == ["run one-seed", "run one-seed"]  # no reference folder: no reference rows
    for (_, cells, _), steps in zip(rows, (40, 60), strict=True):
        assert cells[5:] == [
            "seed 0",
            f"{steps} steps, ShapesWorld quick",
            "not a comparison: one seed, so the difference is noise",
        ]
    html = index.read_text(encoding="utf-8")
    assert '<p class="facts">seed 0 · 40 steps, ShapesWorld quick · not a comparison: one seed' in html
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "**sipe vs mlcam** (seed 0 · 60 steps, ShapesWorld quick · not a comparison: one seed" in md


def test_several_seeds_are_read_against_twice_the_seed_std(fake_run, tmp_path: Path) -> None:
    for s, (base, meth) in enumerate([(50.0, 60.0), (52.0, 61.0)]):
        fake_run(f"cam-s{s}", method="cam", metrics={"MaxBoxAccV2": base}, seed=s)
        fake_run(f"da_wsol-s{s}", method="da_wsol", metrics={"MaxBoxAccV2": meth}, seed=s)
    index = write_report([tmp_path / "runs"], tmp_path / "out")
    ((cls, cells, _),) = headline(index)
    # delta 60.5 - 51 = 9.5 > 2 x max(std 1.41, 0.71)
    assert cls == "run ahead" and cells[4:] == [
        "+9.50",
        "2 seeds (0, 1)",
        "20 steps, ShapesWorld quick",
        "method ahead by more than twice the seed std",
    ]


def test_reading() -> None:
    one, three = Stat(50.0, 0.0, 1), Stat(50.0, 1.0, 3)
    assert reading(one, Stat(60.0, 1.0, 3), lower=False) == ONE_SEED
    assert reading(three, Stat(52.5, 1.0, 3), lower=False) == AHEAD  # 2.5 > 2 x 1
    assert reading(three, Stat(51.5, 1.0, 3), lower=False) == LEVEL
    assert reading(three, Stat(47.0, 1.25, 3), lower=False) == BEHIND  # -3 < -2 x 1.25
    assert reading(three, Stat(47.0, 1.0, 3), lower=True) == AHEAD  # a loss: lower is better


def test_no_match_and_method_only_runs(fake_run, tmp_path: Path) -> None:
    folder = references(tmp_path)
    fake_run("cam", method="cam", metrics={"MaxBoxAccV2": 1.0}, root=tmp_path / "a")
    fake_run("da_wsol", method="da_wsol", metrics={"MaxBoxAccV2": 2.0}, root=tmp_path / "a")
    only_old = tmp_path / "only-old"
    only_old.mkdir()
    (only_old / "old-format.json").write_text((folder / "old-format.json").read_text())
    rows = headline(write_report([tmp_path / "a"], tmp_path / "out-a", reference=only_old))
    assert rows[1] == ("no-reference", [f"no reference result for da_wsol vs cam in {only_old}"], [])
    # runs of SIPE alone still get its reference against its baseline
    fake_run("sipe", method="sipe", metrics={"mIoU": 15.0}, kind="segmentation", root=tmp_path / "b")
    rows = headline(write_report([tmp_path / "b"], tmp_path / "out-b", reference=folder))
    assert [cls for cls, _, _ in rows] == ["run unpaired", "reference behind", "reference-source", "losing"]
    assert rows[0][1][:5] == ["sipe (no mlcam run)", "mIoU", "–", "15.00", "–"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "malformed result file (JSON"),
        (
            '{"study": "s", "command": "c", "commit": "x", "date": "d", "shapesworld": "1.5", "rows": '
            '[{"run": "r", "role": "method", "method": "sipe", "note": "two\\nlines", "seeds": [0], '
            '"metrics": {"m": {"mean": 1, "std": 0, "values": [1]}}}]}',
            "'note' must be a one-line string",
        ),
        (
            '{"study": "s", "command": "c", "commit": "x", "date": "d", "shapesworld": "1.5", "rows": '
            '[{"run": "r", "role": "method", "seeds": [0], "metrics": {"m": {"mean": "1", "std": 0, "values": [1]}}}]}',
            "must be numbers",
        ),
    ],
)
def test_a_malformed_reference_file_is_one_line_naming_it(
    fake_run, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    run = fake_run("cam", method="cam", metrics={"MaxBoxAccV2": 1.0})
    folder = references(tmp_path)
    bad = folder / "broken.json"
    bad.write_text(content)
    out = tmp_path / "out"
    assert main(["report", str(run), "--out", str(out), "--reference", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad}: ") and message in err[0], err
    assert not (out / "index.html").exists()


def test_missing_or_empty_reference_folder(fake_run, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = fake_run("cam", method="cam", metrics={"MaxBoxAccV2": 1.0})
    (tmp_path / "empty").mkdir()
    for folder, says in (
        (tmp_path / "nope", "reference folder not found"),
        (tmp_path / "empty", "no result files (*.json) in the reference folder"),
    ):
        assert main(["report", str(run), "--out", str(tmp_path / "o"), "--reference", str(folder)]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"error: {folder}: {says}"]


def test_links(tmp_path: Path) -> None:
    assert github_anchor(SECTION) == ANCHOR
    assert github_anchor("Scaling to several GPUs or machines") == "scaling-to-several-gpus-or-machines"
    folder = references(tmp_path)
    link = resolve_link(f"../README.md#{ANCHOR}", folder)
    assert link.href == f"{(tmp_path / 'repo' / 'README.md').as_uri()}#{ANCHOR}"
    assert resolve_link("../README.md#no-such-section", folder).text == "README.md#no-such-section"
    assert resolve_link("../MISSING.md#x", folder).href is None  # a copied folder: the text, no broken link
    assert resolve_link("https://example.org/a#b", folder).href == "https://example.org/a#b"
    refs = load_references(folder).matching("sipe", "mlcam")
    assert [r.study for r in refs] == ["wsss-full"] and refs[0].note == WHY
