"""``lowlabel demo`` orchestration: discovery, reuse of finished runs, failures, progress, the report.

Training is replaced by a fake runner that writes a run folder in the engine's layout, so these
tests take a second; the real end-to-end demo is ``make demo`` (timed in benchmarks/README.md).
"""

from __future__ import annotations

import io
import json
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from lowlabel.cli import demo
from lowlabel.cli.demo import DemoRun, discover_runs, run_demo
from lowlabel.errors import UserError
from lowlabel.samples import save_sample, write_per_image


def write_configs(root: Path, methods: Sequence[str]) -> Path:
    for m in methods:
        (root / m).mkdir(parents=True)
        (root / m / "synth-quick.yaml").write_text("trainer:\n  max_steps: 2\n")
    return root


class FakeRunner:
    """Writes a finished run (or fails for the methods in ``fail``) and records its calls."""

    def __init__(self, fail: Sequence[str] = ()) -> None:
        self.fail = set(fail)
        self.calls: list[tuple[str, tuple[str, ...], bool]] = []

    def __call__(self, run: DemoRun, overrides: Sequence[str], log_path: Path) -> int:
        self.calls.append((run.method, tuple(overrides), run.run_dir.exists()))
        run.run_dir.mkdir(parents=True, exist_ok=True)
        log_path.write_text("step 1 loss=0.5\nboom\n" if run.method in self.fail else "ok\n")
        if run.method in self.fail:
            return 1
        (run.run_dir / "config.yaml").write_text("trainer:\n  seed: 0\n")
        (run.run_dir / "env.json").write_text(json.dumps({"method": run.method}))
        (run.run_dir / "metrics.json").write_text(json.dumps({"MaxBoxAccV2": 42.5, "step": 2, "split": "val"}))
        eval_dir = run.run_dir / "eval" / "val"
        write_per_image(eval_dir, {"a": 0.5, "b": 0.25})
        for image_id in ("a", "b"):
            save_sample(eval_dir, image_id, "localization", np.zeros((8, 8, 3), np.uint8),
                        heatmap=np.zeros((8, 8), np.float32), gt_boxes=np.array([[1, 1, 4, 4]]),
                        pred_boxes=np.zeros((0, 4)))
        return 0


def test_discover_orders_baselines_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lowlabel.methods.METHODS", {"da_wsol": "x", "cam": "y", "sipe": "z", "nocfg": "w", "seg": "v"})
    configs = write_configs(tmp_path / "configs", ["da_wsol", "cam", "sipe", "seg"])
    runs = discover_runs(tmp_path / "out", configs_dir=configs)
    assert [r.method for r in runs] == ["cam", "da_wsol", "sipe", "seg"]  # a later stage after its earlier one
    assert runs[0].run_dir == tmp_path / "out" / "cam"
    assert runs[0].config == configs / "cam" / "synth-quick.yaml"
    assert runs[3].inputs == (("--init_from", runs[2]),) and runs[2].inputs == ()
    assert [r.method for r in discover_runs(tmp_path / "o", configs_dir=configs, only=["sipe"])] == ["sipe"]
    with pytest.raises(UserError, match="seg starts from a sipe run; add sipe"):
        discover_runs(tmp_path / "o", configs_dir=configs, only=["seg"])
    with pytest.raises(UserError, match="nocfg"):
        discover_runs(tmp_path / "o", configs_dir=configs, only=["nocfg"])
    with pytest.raises(UserError, match="nothing to run"):
        discover_runs(tmp_path / "o", configs_dir=tmp_path / "empty")


def test_translators_start_from_the_detector_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """cut and lgcl need the source detector's run: the detector trains before them and each gets it as
    ``--detector``; a method that is its own baseline and a later stage (contrastcorr) still follows its stage."""
    monkeypatch.setattr("lowlabel.methods.METHODS", {m: "x" for m in (
        "cam", "contrastcorr_ae", "contrastcorr", "detector", "cut", "lgcl")})
    configs = write_configs(tmp_path / "configs", ["cam", "contrastcorr_ae", "contrastcorr", "detector", "cut", "lgcl"])
    runs = {r.method: r for r in discover_runs(tmp_path / "out", configs_dir=configs)}
    order = list(runs)
    assert order.index("detector") < order.index("cut") < order.index("lgcl")  # the baseline cut before lgcl
    assert order.index("contrastcorr_ae") < order.index("contrastcorr")
    assert runs["cut"].earlier == runs["lgcl"].earlier == [runs["detector"]]
    assert runs["contrastcorr"].earlier == [runs["contrastcorr_ae"]] and runs["detector"].inputs == ()
    with pytest.raises(UserError, match="lgcl starts from a detector run; add detector"):
        discover_runs(tmp_path / "o", configs_dir=configs, only=["lgcl"])
    seen: list[list[str]] = []
    monkeypatch.setattr(demo.subprocess, "run", lambda c, **_: seen.append(c) or subprocess.CompletedProcess(c, 0))
    demo.subprocess_runner(runs["lgcl"], [], tmp_path / "lgcl.log")
    demo.subprocess_runner(runs["contrastcorr"], [], tmp_path / "cc.log")
    assert seen[0][-2:] == ["--detector", str(tmp_path / "out" / "detector")]
    assert seen[1][-2:] == ["--init_from", str(tmp_path / "out" / "contrastcorr_ae")]
    runner = FakeRunner(fail=["detector"])
    stream = io.StringIO()
    assert run_demo(list(runs.values()), out=tmp_path / "out", runner=runner, data=lambda: None, stream=stream) == 1
    assert "cut skipped: it starts from the detector run, which failed" in stream.getvalue()
    assert [c[0] for c in runner.calls if c[0] in ("cut", "lgcl")] == []


def test_demo_trains_reports_and_reuses_finished_runs(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    runs = [DemoRun(m, tmp_path / f"{m}.yaml", out / m) for m in ("cam", "da_wsol")]
    runner, stream = FakeRunner(), io.StringIO()
    data_calls: list[int] = []
    code = run_demo(runs, out=out, overrides=["--trainer.max_steps", "2"], runner=runner,
                    data=lambda: data_calls.append(1), stream=stream)
    assert code == 0
    two = ("--trainer.max_steps", "2")
    assert runner.calls == [("cam", two, False), ("da_wsol", two, False)]
    assert (out / "cam" / "DONE").is_file() and (out / "da_wsol" / "DONE").is_file()
    text = stream.getvalue()
    index = out / "report" / "index.html"
    assert text.rstrip().splitlines()[-1] == str(index.resolve())
    assert "[1/4] data ShapesWorld quick" in text and "[2/4] train cam" in text and "estimated total" in text
    assert "da_wsol vs cam" in index.read_text()
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings) == {"data:ShapesWorld quick", "train:cam", "train:da_wsol", "report:"}

    runner2 = FakeRunner()
    assert run_demo(runs, out=out, runner=runner2, data=lambda: None, stream=io.StringIO()) == 0
    assert runner2.calls == []  # everything reused


def test_demo_report_shows_reference_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The demo passes a reference folder to the report (by default the clone's benchmarks/results); a malformed
    result file there stops the demo before any training, in one line naming the file."""
    from lowlabel.cli.main import main

    assert demo.default_reference_dir() == Path(demo.__file__).resolve().parents[2] / "benchmarks" / "results"
    refs = tmp_path / "refs"
    refs.mkdir()
    metric = {"MaxBoxAccV2": {"mean": 50.0, "std": 1.0, "values": [49.0, 50.0, 51.0]}}
    rows = [{"run": m, "role": role, "method": m, "seeds": [0, 1, 2], "metrics": metric}
            for m, role in (("da_wsol", "method"), ("cam", "baseline"))]
    study = {"study": "wsol-full", "command": "bash wsol.sh", "commit": "c0ffee", "date": "2026-12-01",
             "shapesworld": "1.5", "rows": rows}
    (refs / "wsol-full.json").write_text(json.dumps(study))
    out = tmp_path / "demo"
    runs = [DemoRun(m, tmp_path / f"{m}.yaml", out / m) for m in ("cam", "da_wsol")]
    assert run_demo(runs, out=out, runner=FakeRunner(), data=lambda: None, stream=io.StringIO(), reference=refs) == 0
    html = (out / "report" / "index.html").read_text()
    assert "reference: wsol-full" in html and "not a comparison" in html and "bash wsol.sh" in html

    (refs / "bad.json").write_text("{")
    assert main(["demo", "--out", str(tmp_path / "d2"), "--methods", "[cam]", "--reference", str(refs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {refs / 'bad.json'}: malformed result file")
    assert not (tmp_path / "d2").exists()


def test_failed_run_is_reported_and_retried(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    runs = [DemoRun(m, tmp_path / f"{m}.yaml", out / m) for m in ("cam", "da_wsol")]
    stream = io.StringIO()
    assert run_demo(runs, out=out, runner=FakeRunner(fail=["da_wsol"]), data=lambda: None, stream=stream) == 1
    text = stream.getvalue()
    assert "da_wsol failed (exit 1)" in text and "boom" in text and "failed: da_wsol" in text
    assert not (out / "da_wsol" / "DONE").exists()
    assert (out / "report" / "index.html").is_file()  # the finished run is still reported
    retry = FakeRunner()
    assert run_demo(runs, out=out, runner=retry, data=lambda: None, stream=io.StringIO()) == 0
    assert retry.calls == [("da_wsol", (), True)]  # only the failed run, in its existing folder


def test_later_stage_starts_from_its_earlier_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """seg gets ``--init_from <sipe run>``, and is skipped when the sipe run failed."""
    out = tmp_path / "demo"
    sipe = DemoRun("sipe", tmp_path / "s.yaml", out / "sipe")
    seg = DemoRun("seg", tmp_path / "g.yaml", out / "seg", inputs=(("--init_from", sipe),))
    stream = io.StringIO()
    runner = FakeRunner(fail=["sipe"])
    assert run_demo([sipe, seg], out=out, runner=runner, data=lambda: None, stream=stream) == 1
    assert [c[0] for c in runner.calls] == ["sipe"]  # seg never ran
    assert "seg skipped: it starts from the sipe run, which failed" in stream.getvalue()
    seen: list[list[str]] = []
    monkeypatch.setattr(demo.subprocess, "run", lambda c, **_: seen.append(c) or subprocess.CompletedProcess(c, 0))
    demo.subprocess_runner(seg, [], tmp_path / "seg.log")
    assert seen[0][-2:] == ["--init_from", str(out / "sipe")]


def test_subprocess_runner_resumes_interrupted_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        seen.append(cmd)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(demo.subprocess, "run", fake_run)
    run = DemoRun("cam", tmp_path / "c.yaml", tmp_path / "cam")
    demo.subprocess_runner(run, ["--trainer.max_steps", "3"], tmp_path / "cam" / "train.log")
    (tmp_path / "cam" / "checkpoints").mkdir()
    demo.subprocess_runner(run, [], tmp_path / "cam" / "train.log")
    assert seen[0][2:] == ["lowlabel.cli.main", "train", "cam", "--config", str(tmp_path / "c.yaml"),
                           "--run-dir", str(tmp_path / "cam"), "--trainer.max_steps", "3"]
    assert seen[1][-2:] == ["--resume", "auto"]
    assert "$ " in (tmp_path / "cam" / "train.log").read_text()


def test_estimated_total_uses_plan() -> None:
    p = demo.DemoProgress(stream=io.StringIO())
    p.plan([10.0, 100.0, 5.0])
    p.start -= 3.0  # 3 s elapsed, inside stage 1 for 3 s
    assert p.estimated_total(3.0) == pytest.approx(3.0 + 7.0 + 105.0, abs=0.1)
    p.index = 1
    assert p.estimated_total(150.0) == pytest.approx(3.0 + 0.0 + 5.0, abs=0.1)  # overrun: current counts 0


def test_terminal_status_line_is_redrawn() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    p = demo.DemoProgress(stream=stream)
    p.plan([1.0, 1.0])
    with p.stage("train", "cam"):
        time.sleep(1.3)
    text = stream.getvalue()
    assert text.count("\r\033[K[1/2] train cam") >= 2  # drawn at start and redrawn after a second
    assert text.endswith("· took 0:01\n")
    assert p.index == 1


@pytest.mark.slow
def test_real_demo_on_a_tiny_budget(tmp_path: Path) -> None:
    """The real thing: ShapesWorld quick, cam and da_wsol for 2 steps each, the report; then full reuse."""
    import sys

    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "lowlabel.cli.main", "demo", "--out", str(out), "--methods", "[cam, da_wsol]",
           "--overrides", "[--trainer.max_steps, '2']"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stdout + first.stderr
    index = out / "report" / "index.html"
    assert first.stdout.strip().splitlines()[-1] == str(index.resolve())
    assert "da_wsol vs cam" in index.read_text()
    assert json.loads((out / "cam" / "metrics.json").read_text())["step"] == 2
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "reusing finished run" in again.stdout and "train cam" not in again.stdout


def test_a_switched_off_baseline_trains_before_its_method(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ContrastCorr's baseline is its intra-only training: a second contrastcorr run with the switch off, from the
    same colour-autoencoder run, in its own folder and with its own name in progress lines."""
    monkeypatch.setattr("lowlabel.methods.METHODS", {m: "x" for m in ("contrastcorr_ae", "contrastcorr")})
    configs = write_configs(tmp_path / "configs", ["contrastcorr_ae", "contrastcorr"])
    runs = discover_runs(tmp_path / "out", configs_dir=configs)
    assert [r.name for r in runs] == ["contrastcorr_ae", "contrastcorr-intra-only", "contrastcorr"]
    ae, intra, full = runs
    assert intra.method == full.method == "contrastcorr" and intra.earlier == full.earlier == [ae]
    assert intra.config == full.config and (intra.extra, full.extra) == (("--contrastcorr.use_inter", "false"), ())
    seen: list[list[str]] = []
    monkeypatch.setattr(demo.subprocess, "run", lambda c, **_: seen.append(c) or subprocess.CompletedProcess(c, 0))
    demo.subprocess_runner(intra, ["--trainer.max_steps", "2"], tmp_path / "intra.log")
    assert seen[0][seen[0].index("--run-dir"):] == [
        "--run-dir", str(tmp_path / "out" / "contrastcorr-intra-only"), "--contrastcorr.use_inter", "false",
        "--trainer.max_steps", "2", "--init_from", str(tmp_path / "out" / "contrastcorr_ae")]
    stream = io.StringIO()
    assert run_demo(runs, out=tmp_path / "out", runner=FakeRunner(fail=["contrastcorr_ae"]), data=lambda: None,
                    stream=stream) == 1
    assert "contrastcorr-intra-only skipped: it starts from the contrastcorr_ae run" in stream.getvalue()


def test_open_vocab_stages_read_the_rpn_run_and_the_teacher_init_baseline(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """regionclip starts from the clip run and the class-agnostic RPN (a detector run of its own config), ovd from the
    regionclip run and the same RPN; ovd's baseline (BASELINE_INITS) is the same transfer from the clip run, trained
    right before it. Without a coco-rpn config the two stages are left out."""
    monkeypatch.setattr("lowlabel.methods.METHODS", {m: "x" for m in ("cam", "detector", "clip", "regionclip", "ovd")})
    configs = write_configs(tmp_path / "configs", ["cam", "detector", "clip", "regionclip", "ovd"])
    assert [r.name for r in discover_runs(tmp_path / "out", configs_dir=configs)] == ["cam", "clip", "detector"]
    (configs / "detector" / "coco-rpn-synth-quick.yaml").write_text("trainer:\n  max_steps: 2\n")
    runs = discover_runs(tmp_path / "out", configs_dir=configs)
    assert [r.name for r in runs] == ["cam", "clip", "detector", "coco-rpn", "regionclip", "ovd-teacher-init", "ovd"]
    by = {r.name: r for r in runs}
    rpn = by["coco-rpn"]
    assert rpn.method == "detector" and rpn.config == configs / "detector" / "coco-rpn-synth-quick.yaml"
    assert by["regionclip"].inputs == (("--init_from", by["clip"]), ("--proposals.source", rpn))
    assert by["ovd"].inputs == (("--init_from", by["regionclip"]), ("--proposals.source", rpn))
    assert by["ovd-teacher-init"].method == "ovd"
    assert by["ovd-teacher-init"].inputs == (("--init_from", by["clip"]), ("--proposals.source", rpn))
    with pytest.raises(UserError, match="ovd starts from a regionclip run; add regionclip"):
        discover_runs(tmp_path / "o", configs_dir=configs, only=["clip", "ovd"])
    assert [r.name for r in discover_runs(tmp_path / "o", configs_dir=configs, only=["clip", "regionclip"])] == [
        "clip", "coco-rpn", "regionclip"]  # the helper run comes along
    seen: list[list[str]] = []
    monkeypatch.setattr(demo.subprocess, "run", lambda c, **_: seen.append(c) or subprocess.CompletedProcess(c, 0))
    demo.subprocess_runner(by["ovd-teacher-init"], [], tmp_path / "ovd.log")
    assert seen[0][seen[0].index("--run-dir"):] == [
        "--run-dir", str(tmp_path / "out" / "ovd-teacher-init"), "--init_from", str(tmp_path / "out" / "clip"),
        "--proposals.source", str(tmp_path / "out" / "coco-rpn")]
    stream = io.StringIO()
    assert run_demo(runs, out=tmp_path / "out", runner=FakeRunner(fail=["detector"]), data=lambda: None,
                    stream=stream) == 1  # the RPN is a detector run: every open-vocabulary stage is skipped
    assert "regionclip skipped: it starts from the coco-rpn run, which failed" in stream.getvalue()
    assert "ovd skipped: it starts from the regionclip run, which failed" in stream.getvalue()
