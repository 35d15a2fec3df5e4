"""Summary and per-class tables: mean ± std over seeds, best value in bold, baseline pairing."""

from __future__ import annotations

import json
import math
import re
from html.parser import HTMLParser

import pytest

from lowlabel.report.comparisons import build_comparisons, init_method, lower_is_better, metric_order
from lowlabel.report.runs import group_runs, load_run
from lowlabel.report.tables import (
    Stat,
    best_indices,
    headlines,
    per_class_tables,
    summary_markdown,
    summary_table,
)


class Cells(HTMLParser):
    """Collects table rows as lists of (text, bold) cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[tuple[str, bool]]] = []
        self.bold = False
        self.cell: list[str] | None = None
        self.cell_bold = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell, self.cell_bold = [], False
        elif tag == "strong":
            self.cell_bold = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(("".join(self.cell), self.cell_bold))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def parse(html: str) -> list[list[tuple[str, bool]]]:
    parser = Cells()
    parser.feed(html)
    return parser.rows


def test_stat_matches_hand_values() -> None:
    s = Stat.of([1.0, 2.0, 3.0, 4.0])
    assert s is not None
    assert s.mean == 2.5
    assert s.std == pytest.approx(math.sqrt((1.5**2 + 0.5**2 + 0.5**2 + 1.5**2) / 3))  # sample std, ddof=1
    assert s.text() == "2.50 ± 1.29"
    assert Stat.of([7.0]).text() == "7.00"
    assert Stat.of([]) is None


def test_best_indices_direction_and_ties() -> None:
    stats = [Stat(1.0, 0, 1), None, Stat(3.0, 0, 1), Stat(3.0, 0, 1)]
    assert best_indices(stats, lower=False) == {2, 3}
    assert best_indices(stats, lower=True) == {0}
    assert best_indices([Stat(1.0, 0, 1), None], lower=False) == set()  # nothing to compare against


def test_lower_is_better_and_order() -> None:
    assert lower_is_better("train/loss") and lower_is_better("J-Decay")
    assert not lower_is_better("MaxBoxAccV2")
    assert metric_order(["zeta", "PxAP", "alpha", "MaxBoxAccV2"]) == ["MaxBoxAccV2", "PxAP", "alpha", "zeta"]


def test_summary_pairs_method_with_baseline_mean_std_and_bold(fake_run) -> None:
    def m(box: float, pxap: float, loss: float) -> dict[str, float]:
        return {"MaxBoxAccV2": box, "PxAP": pxap, "val_loss": loss}

    runs = [
        load_run(fake_run("dawsol", method="da_wsol", metrics=m(60.0, 40.0, 0.2))),
        load_run(fake_run("cam-s0", method="cam", metrics=m(50.0, 41.0, 0.3), seed=0)),
        load_run(fake_run("cam-s1", method="cam", metrics=m(52.0, 43.0, 0.1), seed=1)),
        load_run(fake_run("sipe", method="sipe", metrics={"mIoU": 55.0}, kind="segmentation")),
    ]
    comps = build_comparisons(group_runs(runs))
    assert [c.title for c in comps] == ["da_wsol vs cam", "sipe"]
    rows = parse(summary_table(comps[0]))
    header = [text for text, _ in rows[0]]
    assert header == ["run", "role", "seeds", "MaxBoxAccV2", "PxAP", "val_loss"]
    cam, dawsol = rows[1], rows[2]
    assert cam[:3] == [("cam (2 seeds)", False), ("baseline", False), ("0, 1", False)]
    # cam: MaxBoxAccV2 mean 51, sample std sqrt(2); PxAP mean 42, std sqrt(2); loss mean 0.2, std sqrt(0.02)
    assert cam[3:] == [("51.00 ± 1.41", False), ("42.00 ± 1.41", True), ("0.20 ± 0.14", True)]
    assert dawsol[3:] == [("60.00", True), ("40.00", False), ("0.20", True)]  # loss tie: both bold
    assert dawsol[1] == ("method", False)


def test_per_class_table(fake_run) -> None:
    runs = [
        load_run(fake_run("mlcam", method="mlcam", metrics={"mIoU": 1.0}, per_class={"IoU": {"bg": 80, "a<b>": 10}})),
        load_run(fake_run("sipe", method="sipe", metrics={"mIoU": 2.0}, per_class={"IoU": {"bg": 70.0, "a<b>": 30}})),
    ]
    (comp,) = build_comparisons(group_runs(runs))
    (table,) = per_class_tables(comp)
    assert "<b>" not in table and "a&lt;b&gt;" in table
    rows = parse(table)
    assert rows[1] == [("bg", False), ("80.00", True), ("70.00", False)]
    assert rows[2] == [("a<b>", False), ("10.00", False), ("30.00", True)]
    assert re.search(r"IoU per class", table)


def test_headline_and_markdown(fake_run) -> None:
    runs = [
        load_run(fake_run("cam-s0", method="cam", metrics={"PxAP": 40.0, "MaxBoxAccV2": 50.0}, seed=0)),
        load_run(fake_run("cam-s1", method="cam", metrics={"PxAP": 42.0, "MaxBoxAccV2": 54.0}, seed=1)),
        load_run(fake_run("dawsol", method="da_wsol", metrics={"PxAP": 45.0, "MaxBoxAccV2": 55.5})),
        load_run(fake_run("sipe|x", method="sipe", metrics={"mIoU": 55.0}, kind="segmentation")),
    ]
    comps = build_comparisons(group_runs(runs))
    # MaxBoxAccV2 is the first headline metric; cam mean 52, sample std sqrt(8) = 2.83; delta 55.5 - 52 = +3.5
    (item,) = headlines(comps)
    row = item.row
    assert (row.title, row.metric, row.baseline.text(), row.method.text(), row.delta) == (
        "da_wsol vs cam", "MaxBoxAccV2", "52.00 ± 2.83", "55.50", "+3.50")
    assert row.seeds == "2 seeds / 1 seed" and row.budget == "20 steps, ShapesWorld quick" and item.references is None
    md = summary_markdown(comps)
    assert "| cam (2 seeds) | 52.00 ± 2.83 | 41.00 ± 1.41 |" in md
    assert "| da_wsol (dawsol) | **55.50** | **45.00** |" in md
    assert "sipe (sipe\\|x)" in md


def test_a_switched_off_variant_of_the_method_is_its_baseline(fake_run) -> None:
    """ContrastCorr's baseline is its own intra-only training (contrastcorr.use_inter false in the run's config)."""
    runs = [
        load_run(fake_run("cc", method="contrastcorr", metrics={"J&F-Mean": 60.0},
                          config_extra={"contrastcorr": {"use_inter": True}})),
        load_run(fake_run("cc-intra", method="contrastcorr", metrics={"J&F-Mean": 55.0},
                          config_extra={"contrastcorr": {"use_inter": False}})),
    ]
    (comp,) = build_comparisons(group_runs(runs))
    assert comp.title == "contrastcorr vs intra-only"
    assert [g.runs[0].name for g in comp.baseline] == ["cc-intra"] and [g.runs[0].name for g in comp.method] == ["cc"]
    (item,) = headlines([comp])
    assert (item.row.metric, item.row.delta, item.baseline_name) == ("J&F-Mean", "+5.00", "intra-only")
    # without the intra-only run there is nothing to compare with: the method stands alone
    (alone,) = build_comparisons(group_runs(runs[:1]))
    assert alone.title == "contrastcorr" and alone.baseline == []
    (baseline_only,) = build_comparisons(group_runs(runs[1:]))  # the intra-only run is never shown as the method
    assert baseline_only.method == [] and [g.runs[0].name for g in baseline_only.baseline] == ["cc-intra"]
    assert headlines([baseline_only]) == []


def test_a_stage_started_from_the_teacher_is_its_baseline(fake_run, tmp_path) -> None:
    """RegionCLIP's detection transfer from the CLIP teacher is the baseline of the one from the student: told apart by
    the method of the run ``init_from`` names (absolute, or relative to the env.json ``cwd`` of the training)."""
    teacher = fake_run("teacher", method="clip", metrics={"region_acc": 30.0})
    student = fake_run("student", method="regionclip", metrics={"region_acc": 35.0})
    for folder, method in ((teacher, "clip"), (student, "regionclip")):
        (folder / "env.json").write_text(json.dumps({"method": method}))
    ovd = fake_run("ovd", method="ovd", metrics={"AP50_novel": 20.0}, config_extra={"init_from": str(student)})
    base = fake_run("ovd-teacher-init", method="ovd", metrics={"AP50_novel": 12.0},
                    config_extra={"init_from": "runs/teacher/checkpoints/last.ckpt"})
    (base / "env.json").write_text(json.dumps({"cwd": str(tmp_path)}))
    runs = [load_run(p) for p in (ovd, base)]
    assert [init_method(r) for r in runs] == ["regionclip", "clip"]
    (comp,) = build_comparisons(group_runs(runs))
    assert comp.title == "ovd vs teacher-init"
    assert [g.runs[0].name for g in comp.baseline] == ["ovd-teacher-init"]
    assert [g.runs[0].name for g in comp.method] == ["ovd"]
    (base / "env.json").write_text("{}")  # the relative path cannot be resolved: not known to be the baseline
    assert init_method(load_run(base)) == ""
