"""Reading run folders and grouping seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from lowlabel.errors import UserError
from lowlabel.report.runs import expand_run_dirs, group_runs, load_run, read_curves


def test_load_run_reads_metrics_seed_split_and_curves(fake_run) -> None:
    path = fake_run("cam-s3", method="cam", metrics={"MaxBoxAccV2": 51.5, "PxAP": 40.25}, seed=3, split="test")
    run = load_run(path)
    assert run.method == "cam"
    assert run.seed == 3
    assert run.split == "test"
    assert run.metrics == {"MaxBoxAccV2": 51.5, "PxAP": 40.25}  # step/split are bookkeeping, not metrics
    assert run.curves["train/acc"] == [(0, 0.0), (5, 0.25), (10, 0.5), (15, 0.75), (20, 1.0)]
    assert run.eval_dir == path / "eval" / "test"
    assert len(run.per_image()) == 16
    assert {f"img_{i:03d}" for i in range(6)} <= set(run.sample_paths())
    assert len(run.sample_paths()) == 12  # 6 fixed + 6 worst
    assert "max_steps: 20" in run.config_text


def test_missing_metrics_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("method: cam\n")
    with pytest.raises(UserError, match=r"run/metrics\.json: missing"):
        load_run(tmp_path / "run")


def test_malformed_curve_row_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("step,key,value\n1,loss,0.5\n2,loss,abc\n")
    with pytest.raises(UserError, match=r"metrics\.csv:3: malformed row"):
        read_curves(path)


def test_curves_drop_non_finite_values(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("step,key,value\n1,loss,0.5\n2,loss,nan\n3,loss,inf\n4,loss,0.25\n")
    assert read_curves(path) == {"loss": [(1, 0.5), (4, 0.25)]}


def test_group_runs_merges_seeds_only(fake_run) -> None:
    a = load_run(fake_run("cam-s0", method="cam", metrics={"m": 1.0}, seed=0))
    b = load_run(fake_run("cam-s1", method="cam", metrics={"m": 2.0}, seed=1))
    c = load_run(fake_run("cam-lr", method="cam", metrics={"m": 3.0}, seed=0, config_extra={"optim": {"lr": 0.1}}))
    d = load_run(fake_run("dawsol", method="da_wsol", metrics={"m": 4.0}, seed=0))
    e = load_run(fake_run("cam-s2", method="cam", metrics={"m": 5.0}, seed=2, config_extra={
        "trainer": {"max_steps": 20, "seed": 2, "ckpt_every": 500, "log_every": 1}}))  # bookkeeping only
    f = load_run(fake_run("cam-long", method="cam", metrics={"m": 6.0}, seed=0, config_extra={
        "trainer": {"max_steps": 40, "seed": 0}}))
    groups = group_runs([a, c, b, d, e, f])
    assert [[r.name for r in g.runs] for g in groups] == [
        ["cam-s0", "cam-s1", "cam-s2"], ["cam-lr"], ["dawsol"], ["cam-long"]]
    assert groups[0].values("m") == [1.0, 2.0, 5.0]
    assert groups[0].label == "cam (3 seeds)"


def test_expand_run_dirs(fake_run, tmp_path: Path) -> None:
    a = fake_run("a", method="cam", metrics={"m": 1.0})
    b = fake_run("b", method="cam", metrics={"m": 1.0})
    assert expand_run_dirs([tmp_path / "runs"]) == [a, b]
    assert expand_run_dirs([b]) == [b]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a run folder"):
        expand_run_dirs([tmp_path / "empty"])
    with pytest.raises(UserError, match="not found"):
        expand_run_dirs([tmp_path / "nope"])


def test_labels_skip_a_folder_named_after_the_method(fake_run) -> None:
    same = load_run(fake_run("cam", method="cam", metrics={"m": 1.0}))
    other = load_run(fake_run("cam-lr0.1", method="cam", metrics={"m": 1.0}, config_extra={"optim": {"lr": 0.1}}))
    assert (same.label, other.label) == ("cam", "cam · cam-lr0.1")
    assert [g.label for g in group_runs([same, other])] == ["cam", "cam (cam-lr0.1)"]
