"""``lowlabel report`` end to end: a run folder written by the real engine (toy method), then the CLI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lowlabel.cli.main import main
from lowlabel.report.runs import load_run


def test_report_reads_a_run_written_by_the_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from lowlabel.engine import fit

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))  # `tests.toy_method` from the repo root
    from tests.toy_method import ToyConfig, build

    torch.set_num_threads(1)
    cfg = ToyConfig()
    cfg.trainer = dataclasses.replace(cfg.trainer, accelerator="cpu", max_steps=4, log_every=1, seed=5)
    run_dir = tmp_path / "toy-run"
    result = fit(build(cfg), run_dir=run_dir, progress=False)

    run = load_run(run_dir)
    assert run.method == "toy" and run.seed == 5  # method from env.json, seed from config.yaml's trainer
    assert run.metrics == pytest.approx({k: v for k, v in result.metrics.items()})
    assert [s for s, _ in run.curves[next(k for k in run.curves if k.startswith("loss"))]] == [1, 2, 3, 4]

    assert main(["report", str(run_dir), "--out", str(tmp_path / "out")]) == 0
    index = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert index == (tmp_path / "out" / "index.html").resolve()
    html = index.read_text()
    key, value = next(iter(result.metrics.items()))
    assert f'data-metric="{key}"' in html and f"{value:.2f}" in html


def test_report_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'missing'}: run folder not found"]
