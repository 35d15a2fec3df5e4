"""Crash safety through the real CLI in subprocesses: SIGKILL mid-training then ``--resume auto`` gives
bit-identical weights, optimizer states, logs and metrics; a 2-process gloo DDP run equals the
single-process run with the combined batch. Both for the toy regression and the toy GAN (two optimizers
in ordered phases, a frozen network)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lowlabel.methods
from lowlabel.cli.main import main
from lowlabel.engine.checkpoint import load_checkpoint
from tests.engine.helpers import ROOT, assert_same, read_csv

CLI = [sys.executable, str(ROOT / "tests" / "toy_cli.py")]
MODULES = {"toy": "tests.toy_method", "toy_gan": "tests.toy_gan"}


def train_args(method: str) -> list[str]:
    return ["train", method, "--accelerator", "cpu", "--no-progress", "--trainer.max_steps", "16",
            "--trainer.ckpt_every", "2", "--trainer.eval_every", "8", "--trainer.batch_size", "8",
            "--data.dropout", "0.3", "--data.step_sleep", "0.15", "--seed", "7"]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(CLI + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env(), text=True)


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def wait_for_step(run: Path, step: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Block until ``logs/metrics.csv`` shows ``step`` (after a checkpoint exists)."""
    deadline = time.time() + timeout
    csv_path = run / "logs" / "metrics.csv"
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if (run / "checkpoints" / "last.ckpt").exists() and csv_path.exists():
            steps = [line.split(",")[0] for line in csv_path.read_text().splitlines()[1:]]
            if any(s.isdigit() and int(s) >= step for s in steps):
                return
        time.sleep(0.05)
    raise TimeoutError(f"run never reached step {step}")


@pytest.mark.parametrize("method", ["toy", "toy_gan"])
def test_sigkill_then_resume_is_bit_identical(tmp_path, monkeypatch, method):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "killed"
    train = train_args(method)
    victim = start(train + ["--run-dir", str(run_dir)])
    monkeypatch.setitem(lowlabel.methods.METHODS, method, MODULES[method])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the subprocesses (tests/toy_cli.py)
    try:  # the uninterrupted reference runs in this process while the victim starts up
        assert main(train + ["--run-dir", str(ref_dir)]) == 0
    finally:
        torch.set_num_threads(threads)
    wait_for_step(run_dir, 7, victim)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["step"]
    assert 6 <= killed_at < 16, killed_at
    finish(start(train + ["--run-dir", str(run_dir), "--resume", "auto"]))

    a = load_checkpoint(ref_dir / "checkpoints" / "last.ckpt")
    b = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert a["step"] == b["step"] == 16 and a["epoch"] == b["epoch"]
    for key in ("nets", "optimizers", "schedulers", "method_state"):
        assert_same(a[key], b[key], key)
    optimizer_state = next(iter(b["optimizers"].values()))["state"][0]
    assert set(optimizer_state) == ({"momentum_buffer"} if method == "toy" else {"step", "exp_avg", "exp_avg_sq"})
    assert json.loads((ref_dir / "metrics.json").read_text()) == json.loads((run_dir / "metrics.json").read_text())
    assert read_csv(ref_dir / "logs" / "metrics.csv") == read_csv(run_dir / "logs" / "metrics.csv")
    if method == "toy":
        assert b["method_state"] == {"ema_updates": 16}
    else:
        assert set(b["nets"]) == set(b["optimizers"]) == {"D", "G"}
        assert (run_dir / "frozen.json").read_text() == (ref_dir / "frozen.json").read_text()
    assert json.loads((run_dir / "env.json").read_text())["resumed_at_step"] == killed_at


@pytest.mark.parametrize("method", [pytest.param("toy", marks=pytest.mark.slow), "toy_gan"])
def test_two_process_ddp_equals_single_process_with_combined_batch(tmp_path, method):
    """The GAN's steps are phased: DDP's reducer is off and the engine averages each optimizer's gradients.
    The GAN case (~16 s, two processes plus one) runs by default; the one-optimizer case with `make test-slow`."""
    common = ["train", method, "--accelerator", "cpu", "--no-progress", "--trainer.max_steps", "6", "--seed", "3"]
    if method == "toy":
        common += ["--optim.momentum", "0.9"]
    (tmp_path / "ddp").mkdir()
    (tmp_path / "single").mkdir()
    ddp = start(common + ["--devices", "2", "--strategy", "ddp", "--trainer.batch_size", "4",
                          "--data.dump_dir", str(tmp_path / "ddp"), "--run-dir", str(tmp_path / "ddp_run")])
    single = start(common + ["--trainer.batch_size", "8", "--data.dump_dir", str(tmp_path / "single"),
                             "--run-dir", str(tmp_path / "single_run")])
    finish(ddp)
    finish(single)
    r0 = torch.load(tmp_path / "ddp" / "rank0.pt")
    r1 = torch.load(tmp_path / "ddp" / "rank1.pt")
    one = torch.load(tmp_path / "single" / "rank0.pt")
    assert set(r0) == set(one) == ({"model"} if method == "toy" else {"D", "G"})
    for net in one:
        for key in one[net]:
            assert torch.equal(r0[net][key], r1[net][key]), (net, key)
            torch.testing.assert_close(r0[net][key], one[net][key], rtol=1e-5, atol=1e-6)
    assert all(float(v.abs().sum()) > 0 for net in r0.values() for v in net.values() if v.dim() > 1)
    assert json.loads((tmp_path / "ddp_run" / "env.json").read_text())["world_size"] == 2


def test_config_error_in_a_real_process():
    """The console path end to end: one stderr line, exit status 2 (more cases in tests/cli)."""
    proc = subprocess.run(CLI + ["train", "toy", "--optim.lrx", "1"], capture_output=True, text=True, env=env(),
                          timeout=180)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: unknown option(s): --optim.lrx 1"]
