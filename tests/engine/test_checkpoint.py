"""Atomic checkpoint writes, disk-full handling, pickle refusal, RNG capture."""

import errno
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lowlabel.engine.checkpoint import (
    atomic_copy,
    atomic_write,
    load_checkpoint,
    remove_stale_temp_files,
    rng_state,
    serialize,
    set_rng_state,
)
from lowlabel.errors import CheckpointError, UserError

ROOT = Path(__file__).resolve().parents[2]


class Custom:  # an arbitrary pickled object, as authors' .pth files often contain
    def __init__(self) -> None:
        self.w = torch.ones(2)


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_write(serialize({"step": 1}), path)
    atomic_write(serialize({"step": 2}), path)
    assert load_checkpoint(path) == {"step": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_kill_during_write_keeps_previous_checkpoint(tmp_path):
    """A real SIGKILL between writing the temp file and renaming it."""
    path = tmp_path / "last.ckpt"
    atomic_write(serialize({"step": 1, "w": torch.arange(4.0)}), path)
    script = f"""
import os, signal, sys, torch
sys.path.insert(0, {str(ROOT)!r})
from lowlabel.engine import checkpoint
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
checkpoint.os.replace = die
checkpoint.atomic_write(checkpoint.serialize({{"step": 2, "w": torch.zeros(10**6)}}), {str(path)!r})
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL
    leftovers = [p for p in tmp_path.iterdir() if p.name != "last.ckpt"]
    assert leftovers and leftovers[0].stat().st_size > 4 * 10**6  # the half-done temp file is there
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 1 and torch.equal(ckpt["w"], torch.arange(4.0))
    remove_stale_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_truncated_file_is_a_one_line_user_error(tmp_path):
    path = tmp_path / "x.ckpt"
    data = serialize({"w": torch.zeros(1000)})
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_disk_full_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    atomic_write(serialize({"step": 1}), path)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointError, match="no space left on device.*previous checkpoint is intact"):
        atomic_write(serialize({"step": 2}), path)
    monkeypatch.undo()
    assert load_checkpoint(path) == {"step": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_pickle_needs_trust(tmp_path):
    path = tmp_path / "authors.pth"
    torch.save({"model": Custom()}, path)
    with pytest.raises(UserError, match="--trust-pickle"):
        load_checkpoint(path)
    loaded = load_checkpoint(path, trust_pickle=True)
    assert torch.equal(loaded["model"].w, torch.ones(2))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_rng_round_trip_through_a_checkpoint(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    atomic_write(serialize({"rng": rng_state()}), tmp_path / "r.ckpt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(load_checkpoint(tmp_path / "r.ckpt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_atomic_copy_links_and_keeps_the_old_file_when_the_source_moves_on(tmp_path):
    last, best = tmp_path / "last.ckpt", tmp_path / "best.ckpt"
    atomic_write(serialize({"step": 1}), last)
    atomic_copy(last, best)
    assert best.stat().st_ino == last.stat().st_ino  # one file on disk, not two copies
    atomic_write(serialize({"step": 2}), last)  # a later, worse step
    assert load_checkpoint(best) == {"step": 1} and load_checkpoint(last) == {"step": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.ckpt", "last.ckpt"]


def test_atomic_copy_writes_the_bytes_where_links_are_refused(tmp_path, monkeypatch):
    last, best = tmp_path / "last.ckpt", tmp_path / "best.ckpt"
    atomic_write(serialize({"step": 3}), last)

    def refuse(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", refuse)
    atomic_copy(last, best)
    assert best.stat().st_ino != last.stat().st_ino and load_checkpoint(best) == {"step": 3}


def test_atomic_copy_disk_full_keeps_previous(tmp_path, monkeypatch):
    last, best = tmp_path / "last.ckpt", tmp_path / "best.ckpt"
    atomic_write(serialize({"step": 1}), best)
    atomic_write(serialize({"step": 2}), last)

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", full)
    with pytest.raises(CheckpointError, match="no space left on device.*previous checkpoint is intact"):
        atomic_copy(last, best)
    assert load_checkpoint(best) == {"step": 1}
