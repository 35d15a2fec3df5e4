"""Run logs: ``logs/metrics.csv`` in long format (``step,key,value``) plus TensorBoard, and ``env.json``.

The CSV byte offset is stored in every checkpoint; a resumed run truncates the CSV to it and
restarts TensorBoard with ``purge_step``, so rows logged after the checkpoint (by the killed
process) disappear and the logs continue as if the run had never stopped.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CSV_HEADER = "step,key,value\n"
FLUSH_SECONDS = 30.0  # metrics.csv is flushed at least this often while a run logs


class RunLogger:
    """Scalar logger writing CSV and TensorBoard on rank 0 (a no-op elsewhere).

    Args:
        log_dir: ``<run>/logs``.
        enabled: False on ranks other than 0.
        resume_offset: CSV length in bytes at the checkpoint being resumed (None for a fresh run).
        resume_step: the checkpoint's step (TensorBoard events after it are purged).
        tensorboard: also write TensorBoard event files.
    """

    def __init__(
        self,
        log_dir: Path,
        *,
        enabled: bool = True,
        resume_offset: int | None = None,
        resume_step: int | None = None,
        tensorboard: bool = True,
    ):
        self.enabled = enabled
        self.csv_path = Path(log_dir) / "metrics.csv"
        self._csv: Any = None
        self._tb: Any = None
        if not enabled:
            return
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        if resume_offset is not None and self.csv_path.exists():
            with open(self.csv_path, "r+b") as handle:
                handle.truncate(resume_offset)
        elif resume_offset is None and self.csv_path.exists():
            self.csv_path.unlink()
        self._csv = open(self.csv_path, "a", newline="")  # noqa: SIM115 (lives as long as the run)
        if self._csv.tell() == 0:
            self._csv.write(CSV_HEADER)
        self._flushed = time.monotonic()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(log_dir), purge_step=resume_step if resume_offset is not None else None)

    def log(self, step: int, values: Mapping[str, float]) -> None:
        """Write ``values`` (flat ``key -> number``) at ``step``."""
        if not self.enabled:
            return
        for key, value in values.items():
            value = float(value)
            text = repr(value) if math.isfinite(value) else str(value)
            self._csv.write(f"{step},{_csv_field(key)},{text}\n")
            if self._tb is not None:
                self._tb.add_scalar(key, value, step)
        if time.monotonic() - self._flushed > FLUSH_SECONDS:  # `tail -f metrics.csv` shows a long run's progress
            self._csv.flush()
            self._flushed = time.monotonic()

    def offset(self) -> int:
        """Flush and return the CSV length in bytes (stored in checkpoints)."""
        if not self.enabled:
            return 0
        self._csv.flush()
        if self._tb is not None:
            self._tb.flush()
        return self._csv.tell()

    def close(self) -> None:
        if self.enabled:
            self._csv.close()
            if self._tb is not None:
                self._tb.close()


def _csv_field(key: str) -> str:
    return f'"{key}"' if ("," in key or '"' in key) else key


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> dict[str, Any]:
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip() != ""
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def environment_info(*, method: str, seed: int, device: str, world_size: int, precision: str) -> dict[str, Any]:
    """What ``env.json`` records: versions, git commit, device, seed, command line."""
    import torch

    packages = ["lowlabel", "torch", "torchvision", "lightning", "jsonargparse", "timm", "numpy",
                "opencv-python-headless", "faster-coco-eval", "safetensors"]
    return {
        "method": method,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "host": socket.gethostname(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in packages},
        "git": _git_commit(),
        "device": device,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "world_size": world_size,
        "precision": precision,
        "seed": seed,
        "torch_threads": torch.get_num_threads(),
    }


def write_metrics(folder: Path, result: Any, *, step: int | None, split: str) -> None:
    """``folder/metrics.json`` (flat metric keys + ``step`` + ``split``) and, when the evaluation has
    per-class tables, ``folder/eval/<split>/per_class.json`` (``{metric: {class: value}}``)."""
    write_json(Path(folder) / "metrics.json", {**result.metrics, "step": step, "split": split})
    if result.per_class:
        write_json(Path(folder) / "eval" / split / "per_class.json", result.per_class)


def write_json(path: Path, data: Any) -> None:
    """Pretty JSON, written to a temp file then renamed (readers never see half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    os.replace(tmp, path)
