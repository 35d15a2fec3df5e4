"""``lowlabel train|evaluate|predict`` on the toy method, in-process: options, config files, one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import lowlabel.methods  # noqa: E402
from lowlabel.cli.main import main  # noqa: E402
from lowlabel.engine.checkpoint import load_checkpoint  # noqa: E402

FAST = ["--accelerator", "cpu", "--no-progress", "--trainer.max_steps", "3", "--trainer.batch_size", "8"]


@pytest.fixture(autouse=True)
def toy(monkeypatch):
    monkeypatch.setitem(lowlabel.methods.METHODS, "toy", "tests.toy_method")
    monkeypatch.setitem(lowlabel.methods.METHODS, "toy2", "tests.toy_method")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One toy run shared by the evaluate/predict tests."""
    run = tmp_path_factory.mktemp("cli") / "run"
    mp = pytest.MonkeyPatch()
    mp.setitem(lowlabel.methods.METHODS, "toy", "tests.toy_method")
    try:
        assert main(["train", "toy", *FAST, "--run-dir", str(run)]) == 0
    finally:
        mp.undo()
    return run


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: ")
    return err[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--optim.lrx", "0.1"], "unknown option(s): --optim.lrx 0.1"),
        (["--optim.lr", "abc"], "Parser key \"optim.lr\": Expected a <class 'float'>. Got value: abc"),
        (["--config", "/nonexistent/c.yaml"], "File does not exist: '/nonexistent/c.yaml'"),
        (["--optim.lr", "-1"], "optim.lr must be > 0, got -1.0"),
        (["--trainer.monitor_mode", "sideways"], "trainer.monitor_mode"),
    ],
)
def test_bad_options_give_one_line_and_exit_2(args, expected, capsys):
    assert main(["train", "toy", *args]) == 2
    assert expected in one_error_line(capsys)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("optim:\n  lrx: 3\n", "unknown key 'optim.lrx' (in config file"),
        ("hidden_size: 3\n", "unknown key 'hidden_size' (in config file"),
        ("optim:\n  lr: fast\n", "Parser key \"optim.lr\": Expected a <class 'float'>. Got value: fast (in config"),
        ("optim: [\n", "Problems parsing config"),
    ],
)
def test_bad_config_files_name_the_key_and_the_file(tmp_path, text, expected, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["train", "toy", "--config", str(path)]) == 2
    line = one_error_line(capsys)
    assert expected in line and (str(path) in line)


def test_unknown_method_and_debug_traceback(capsys):
    assert main(["train", "nope"]) == 2
    assert "nope" in one_error_line(capsys)
    with pytest.raises(ValueError, match="optim.lr must be > 0"):
        main(["train", "toy", "--optim.lr", "-1", "--debug"])


def test_help_lists_methods_and_print_config_applies_overrides(tmp_path, capsys):
    assert main(["train", "--help"]) == 0
    assert "toy" in capsys.readouterr().out
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("optim:\n  lr: 0.5\ntrainer:\n  max_steps: 9\n")
    assert main(["train", "toy", "--config", str(cfg_file), "--trainer.max_steps", "4", "--seed", "11",
                 "--deterministic", "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["optim"]["lr"] == 0.5 and printed["trainer"]["max_steps"] == 4
    assert printed["trainer"]["seed"] == 11 and printed["trainer"]["deterministic"] is True


def test_train_writes_the_resolved_config_that_reloads(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "toy", *FAST, "--optim.lr", "0.02", "--run-dir", str(run)]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 0.02 and saved["trainer"]["max_steps"] == 3
    assert "mse" in capsys.readouterr().out
    # the saved config is a valid --config file for the same command
    assert main(["train", "toy", "--config", str(run / "config.yaml"), "--no-progress",
                 "--run-dir", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "config.yaml").read_text() == (run / "config.yaml").read_text()


def test_default_run_dir_and_resume_auto(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "toy", *FAST]) == 0
    runs = list((tmp_path / "runs" / "toy").iterdir())
    assert len(runs) == 1 and len(runs[0].name) == len("20260101-120000")
    # --resume auto with a larger budget continues the latest run from step 3
    assert main(["train", "toy", *FAST, "--trainer.max_steps", "5", "--resume", "auto"]) == 0
    assert list((tmp_path / "runs" / "toy").iterdir()) == runs
    assert load_checkpoint(runs[0] / "checkpoints" / "last.ckpt")["step"] == 5
    assert json.loads((runs[0] / "env.json").read_text())["resumed_at_step"] == 3


def test_nan_guard_from_the_cli(tmp_path, capsys):
    code = main(["train", "toy", *FAST, "--data.nan_at_step", "1", "--trainer.ckpt_every", "1",
                 "--run-dir", str(tmp_path / "run")])
    assert code == 1
    assert "non-finite loss at step 1: loss/model = nan" in one_error_line(capsys)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["step"] == 1


def test_evaluate_writes_metrics_and_eval_folder(trained, capsys):
    assert main(["evaluate", "toy", "--ckpt", str(trained), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "mse" in out
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["step"] == 3 and "mse" in metrics
    assert (trained / "eval" / "test" / "per_image.csv").is_file()


def test_evaluate_a_loose_checkpoint_writes_next_to_it(trained, tmp_path):
    loose = tmp_path / "model.ckpt"
    loose.write_bytes((trained / "checkpoints" / "last.ckpt").read_bytes())
    assert main(["evaluate", "toy", "--ckpt", str(loose), "--split", "val"]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["split"] == "val"
    assert (tmp_path / "eval" / "val").is_dir()


def test_checkpoint_of_another_method_is_refused(trained, capsys):
    assert main(["evaluate", "toy2", "--ckpt", str(trained)]) == 2
    assert "checkpoint of method 'toy', not 'toy2'" in one_error_line(capsys)


def test_predict(trained, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.json").write_text(json.dumps([[0.0] * 6, [1.0] * 6]))
    assert main(["predict", "toy", "--ckpt", str(trained), "--input", str(inputs), "--out", str(tmp_path / "o")]) == 0
    preds = json.loads((tmp_path / "o" / "a.json").read_text())
    weights = load_checkpoint(trained / "checkpoints" / "last.ckpt")["nets"]["model"]
    # the toy net is Linear -> ReLU -> Dropout -> Linear; evaluate it by hand
    x = torch.tensor([[0.0] * 6, [1.0] * 6])
    hidden = torch.relu(x @ weights["0.0.weight"].T + weights["0.0.bias"])
    expected = (hidden @ weights["1.weight"].T + weights["1.bias"]).squeeze(1).tolist()
    assert preds == pytest.approx(expected, rel=1e-5)


def test_pickled_weights_need_trust_pickle(trained, tmp_path, capsys):
    """An authors'-style .pth: a pickled object around a state dict with 'module.' prefixes."""
    state = load_checkpoint(trained / "checkpoints" / "last.ckpt")["nets"]["model"]
    pth = tmp_path / "authors.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "args": Path("x")}, pth)
    (tmp_path / "cfg.yaml").write_text((trained / "config.yaml").read_text())
    args = ["evaluate", "toy", "--ckpt", str(pth), "--method-config", str(tmp_path / "cfg.yaml"), "--split", "val",
            "--out", str(tmp_path / "ev")]
    assert main(args) == 2
    assert "--trust-pickle" in one_error_line(capsys)
    assert main([*args, "--trust-pickle"]) == 0
    ours = json.loads((trained / "metrics.json").read_text())
    theirs = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert main(["evaluate", "toy", "--ckpt", str(trained), "--split", "val"]) == 0
    ours = json.loads((trained / "metrics.json").read_text())
    assert theirs["mse"] == pytest.approx(ours["mse"], rel=1e-6)


def test_disk_full_while_checkpointing_is_one_line_and_keeps_the_previous(tmp_path, monkeypatch, capsys):
    import errno
    import os

    from lowlabel.engine import checkpoint

    real_fsync, calls = os.fsync, []

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) > 2:  # the first checkpoint (file + folder fsync) succeeds, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(checkpoint.os, "fsync", fsync)
    code = main(["train", "toy", *FAST, "--trainer.max_steps", "6", "--trainer.ckpt_every", "2",
                 "--run-dir", str(tmp_path / "run")])
    monkeypatch.undo()
    assert code == 1
    line = one_error_line(capsys)
    assert "no space left on device" in line and "previous checkpoint is intact" in line
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")["step"] == 2
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == ["last.ckpt"]
