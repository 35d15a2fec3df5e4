"""Reading run folders for the report, and grouping the runs of one config over seeds.

A run folder (written by the engine, see ``lowlabel/engine``) holds ``config.yaml``, ``env.json``,
``metrics.json`` (flat keys plus ``step`` and ``split``), ``logs/metrics.csv`` (long format
``step,key,value``) and ``eval/<split>/`` (``per_image.csv``, ``samples/*.npz``; see
:mod:`lowlabel.samples`). Every file but ``metrics.json`` is optional for the report.
"""

from __future__ import annotations

import copy
import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lowlabel.errors import UserError
from lowlabel.samples import read_per_image

# Keys of metrics.json that are bookkeeping, not metrics.
NON_METRIC_KEYS = frozenset({"step", "split", "epoch", "method", "per_class", "monitor", "time", "wall_time"})
# Config keys that differ between runs of one experiment without changing its numbers: the seed, paths and
# bookkeeping (how often the run logs and checkpoints).
VOLATILE_CONFIG_KEYS = frozenset(
    {"seed", "run_dir", "resume", "out", "ckpt", "debug", "config", "ckpt_every", "log_every"}
)


@dataclass
class Run:
    """One run folder, read once.

    Attributes:
        path: the run folder.
        name: a short display name (the folder name).
        method: the method's CLI name (``cam``, ``da_wsol``, ...).
        seed: the training seed, when the config names one.
        config: the resolved config as a dict ({} when ``config.yaml`` is missing).
        config_text: ``config.yaml`` verbatim ("" when missing).
        env_text: ``env.json`` verbatim ("" when missing).
        metrics: numeric metrics of ``metrics.json``.
        split: the split ``metrics.json`` was computed on.
        per_class: ``{metric: {class_name: value}}`` when the run has per-class results.
        curves: ``{key: [(step, value), ...]}`` from ``logs/metrics.csv``.
        steps: the training budget in steps (the config's ``trainer.max_steps``, else the step ``metrics.json``
            was computed at), when known.
        data_root: the config's ``data.root`` ("" when it has none).
    """

    path: Path
    name: str
    method: str
    seed: int | None
    config: dict[str, Any]
    config_text: str
    env_text: str
    metrics: dict[str, float]
    split: str
    per_class: dict[str, dict[str, float | None]] = field(default_factory=dict)
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    steps: int | None = None
    data_root: str = ""

    @property
    def data_name(self) -> str:
        """The data it ran on: ``ShapesWorld quick`` for ``synth:quick``, else the root folder's name ("" unknown)."""
        root = self.data_root.strip().rstrip("/")
        if root.startswith("synth:"):
            return f"ShapesWorld {root.split(':', 1)[1]}"
        return Path(root).name if root else ""

    @property
    def label(self) -> str:
        """``method · folder name``, or just the method when the folder is named after it."""
        return self.method if self.name == self.method else f"{self.method} · {self.name}"

    @property
    def eval_dir(self) -> Path:
        """``eval/<split>/`` of this run (may not exist)."""
        return self.path / "eval" / self.split

    def per_image(self) -> dict[str, float]:
        """``{image_id: score}`` of ``per_image.csv`` ({} when missing)."""
        path = self.eval_dir / "per_image.csv"
        return read_per_image(path) if path.is_file() else {}

    def sample_paths(self) -> dict[str, Path]:
        """``{file stem: path}`` of the ``samples/*.npz`` written by evaluation."""
        folder = self.eval_dir / "samples"
        return {p.stem: p for p in sorted(folder.glob("*.npz"))} if folder.is_dir() else {}


@dataclass
class RunGroup:
    """The runs of one method and config that differ only by seed."""

    method: str
    runs: list[Run]

    @property
    def label(self) -> str:
        """Display name: the method, plus the run folder's name for one run (when it differs) or the seed count."""
        if len(self.runs) == 1:
            name = self.runs[0].name
            return self.method if name == self.method else f"{self.method} ({name})"
        return f"{self.method} ({len(self.runs)} seeds)"

    def values(self, key: str) -> list[float]:
        """The finite values of metric ``key`` over the runs that have it."""
        out = [r.metrics[key] for r in self.runs if key in r.metrics]
        return [v for v in out if math.isfinite(v)]


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` looks like a run folder (has ``metrics.json`` or ``config.yaml``)."""
    return (path / "metrics.json").is_file() or (path / "config.yaml").is_file()


def expand_run_dirs(paths: Iterable[Path]) -> list[Path]:
    """Run folders named by ``paths``; a folder that is not a run itself stands for its run subfolders."""
    out: list[Path] = []
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise UserError(f"{path}: run folder not found")
        if is_run_dir(path):
            out.append(path)
            continue
        children = [c for c in sorted(path.iterdir()) if c.is_dir() and is_run_dir(c)]
        if not children:
            raise UserError(f"{path}: not a run folder (no metrics.json or config.yaml) and holds none")
        out.extend(children)
    return out


def load_run(path: Path) -> Run:
    """Read one run folder. Raises ``UserError`` naming the file when ``metrics.json`` is missing or malformed."""
    path = Path(path)
    metrics_path = path / "metrics.json"
    if not metrics_path.is_file():
        raise UserError(f"{metrics_path}: missing (the run has not been evaluated yet)")
    raw = _read_json(metrics_path)
    config_text = _read_text(path / "config.yaml")
    config = _parse_yaml(config_text, path / "config.yaml")
    env_text = _read_text(path / "env.json")
    env = _parse_json_or_empty(env_text)
    metrics = {k: float(v) for k, v in raw.items() if k not in NON_METRIC_KEYS and _is_number(v)}
    split = str(raw.get("split") or _only_eval_split(path) or "val")
    return Run(
        path=path,
        name=path.name,
        method=_method_name(raw, config, env, path),
        seed=_seed(config),
        config=config,
        config_text=config_text,
        env_text=env_text,
        metrics=metrics,
        split=split,
        per_class=_per_class(raw, path / "eval" / split),
        curves=read_curves(path / "logs" / "metrics.csv"),
        steps=_steps(config, raw),
        data_root=_data_root(config),
    )


def group_runs(runs: Sequence[Run]) -> list[RunGroup]:
    """Group runs by method and config with the seed (and other per-run keys) removed; order of first appearance."""
    groups: dict[str, RunGroup] = {}
    for run in runs:
        key = run.method + "\n" + json.dumps(_strip_volatile(run.config), sort_keys=True, default=str)
        groups.setdefault(key, RunGroup(method=run.method, runs=[])).runs.append(run)
    return list(groups.values())


def read_curves(path: Path) -> dict[str, list[tuple[int, float]]]:
    """``{key: [(step, value), ...]}`` from a long-format ``step,key,value`` CSV ({} when missing).

    Malformed rows raise ``UserError`` naming the file and line; non-finite values are dropped.
    """
    if not path.is_file():
        return {}
    curves: dict[str, list[tuple[int, float]]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"step", "key", "value"} <= set(reader.fieldnames):
            raise UserError(f"{path}: expected a header with step,key,value")
        for line, row in enumerate(reader, start=2):
            try:
                step, value = int(float(row["step"])), float(row["value"])
            except (TypeError, ValueError):
                raise UserError(f"{path}:{line}: malformed row {row}") from None
            if math.isfinite(value):
                curves.setdefault(row["key"], []).append((step, value))
    return curves


def _method_name(raw: dict[str, Any], config: dict[str, Any], env: dict[str, Any], path: Path) -> str:
    for source in (raw, config, env):
        value = source.get("method")
        if isinstance(value, str) and value:
            return value
    return path.name.split("-")[0]


def _seed(config: dict[str, Any]) -> int | None:
    trainer = config.get("trainer")
    for source in (trainer if isinstance(trainer, dict) else {}, config):
        if isinstance(source.get("seed"), int):
            return int(source["seed"])
    return None


def _steps(config: dict[str, Any], raw: dict[str, Any]) -> int | None:
    trainer = config.get("trainer")
    configured = trainer.get("max_steps") if isinstance(trainer, dict) else None
    for value in (configured, raw.get("step")):
        if _is_number(value) and value > 0:
            return int(value)
    return None


def _data_root(config: dict[str, Any]) -> str:
    data = config.get("data")
    root = data.get("root") if isinstance(data, dict) else None
    return root if isinstance(root, str) else ""


def _strip_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_volatile(v) for k, v in value.items() if k not in VOLATILE_CONFIG_KEYS}
    if isinstance(value, list):
        return [_strip_volatile(v) for v in value]
    return copy.copy(value)


def _per_class(raw: dict[str, Any], eval_dir: Path) -> dict[str, dict[str, float | None]]:
    """Per-class tables from ``metrics.json["per_class"]`` or ``eval/<split>/per_class.json``."""
    table = raw.get("per_class")
    path = eval_dir / "per_class.json"
    if not isinstance(table, dict) and path.is_file():
        table = _read_json(path)
    if not isinstance(table, dict):
        return {}
    out: dict[str, dict[str, float | None]] = {}
    for metric, values in table.items():
        if isinstance(values, dict):
            out[str(metric)] = {str(c): (float(v) if _is_number(v) else None) for c, v in values.items()}
    return out


def _only_eval_split(path: Path) -> str | None:
    splits = [p.name for p in sorted((path / "eval").glob("*")) if p.is_dir()]
    return splits[0] if len(splits) == 1 else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    return data


def _parse_json_or_empty(text: str) -> dict[str, Any]:
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def _parse_yaml(text: str, path: Path) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    return data if isinstance(data, dict) else {}
