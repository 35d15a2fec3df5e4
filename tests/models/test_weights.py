"""Weight-file reading (lowlabel.models.weights): a refused pickle is one error line, nothing printed before it."""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lowlabel.errors import UserError
from lowlabel.models.weights import load_checkpoint

PROTOCOL_WARNING = "Detected pickle protocol 4"


def pickled_checkpoint(path: Path, kind: str) -> Path:
    """An authors'-style checkpoint with a non-tensor object (``args``), pickled with protocol 4.

    torch's weights-only unpickler warns "Detected pickle protocol 4" on reading the PROTO opcode, before it
    meets the ``argparse.Namespace`` global it refuses.
    """
    obj = {"state_dict": {"fc.weight": torch.zeros(2, 3)}, "args": argparse.Namespace(lr=0.1, arch="resnet50")}
    if kind == "legacy":  # torch < 1.6 layout: not a zip archive
        torch.save(obj, path, _use_new_zipfile_serialization=False, pickle_protocol=4)
    else:  # a plain pickle named .pth
        with open(path, "wb") as handle:
            pickle.dump(obj, handle, protocol=4)
    return path


def test_the_file_does_make_torch_warn(tmp_path: Path) -> None:
    """Guards the test below: without lowlabel's handling, torch prints the warning and then refuses the file."""
    path = pickled_checkpoint(tmp_path / "a.pth", "legacy")
    with pytest.warns(UserWarning, match=PROTOCOL_WARNING), pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize(("command", "kind"), [("evaluate", "legacy"), ("evaluate", "pickle"), ("predict", "legacy")])
def test_refused_pickle_is_exactly_one_error_line(tmp_path: Path, command: str, kind: str) -> None:
    path = pickled_checkpoint(tmp_path / "authors.pth", kind)
    argv = [sys.executable, "-m", "lowlabel.cli.main", command, "cam", "--ckpt", str(path)]
    if command == "predict":
        argv += ["--input", str(tmp_path), "--out", str(tmp_path / "out")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # the user's default warning filters
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert str(path) in lines[0] and "--trust-pickle" in lines[0]


def test_warnings_of_a_successful_load_are_still_shown(tmp_path: Path) -> None:
    """Protocol 3 (no FRAME opcode, which the weights-only unpickler refuses) loads, with torch's warning."""
    path = tmp_path / "plain.pth"
    torch.save({"w": torch.arange(3.0)}, path, _use_new_zipfile_serialization=False, pickle_protocol=3)
    with pytest.warns(UserWarning, match="Detected pickle protocol 3"):
        state = load_checkpoint(path)
    torch.testing.assert_close(state["w"], torch.arange(3.0))


def test_trust_pickle_loads_the_refused_file(tmp_path: Path) -> None:
    path = pickled_checkpoint(tmp_path / "authors.pth", "legacy")
    with pytest.raises(UserError, match="--trust-pickle"):
        load_checkpoint(path)
    state = load_checkpoint(path, trust_pickle=True)
    assert state["args"].arch == "resnet50" and state["state_dict"]["fc.weight"].shape == (2, 3)
