"""Study results, one JSON file per study, the single source of the README's results tables.

A study script (``benchmarks/studies/*.sh``) ends by writing ``benchmarks/results/<study>.json`` from the
``metrics.json`` of its run folders::

    {"study": "wsol-full", "command": "bash benchmarks/studies/wsol_full.sh", "commit": "c76bb3b...",
     "date": "2026-12-04", "shapesworld": "1.5",
     "rows": [{"run": "da_wsol", "role": "method", "seeds": [0, 1, 2],
               "metrics": {"MaxBoxAccV2": {"mean": 53.13, "std": 0.98, "values": [52.1, 53.2, 54.1]}}},
              {"run": "cam", "role": "baseline", ...},
              {"run": "da_wsol without ...", "role": "ablation", ...}]}

Values are percent, as the runs report them; ``std`` is the sample standard deviation (0 for one seed). The first
metric of a row is the study's headline metric. An optional top-level ``"source"`` (one line) says where the values
come from when they were not read from run folders by the study script (a transcription of a recorded table whose
runs were not kept); the README prints it under the table. Optional row fields (files without them stay valid):

* ``"method"``: the method's CLI name (``"sipe"``), so ``lowlabel report --reference`` can match the row to a
  comparison; ``"config"``: the config it ran (``"synth-full"``). Both are read from the runs' ``env.json`` when the
  study does not give them.
* ``"note"``: one line saying why the row reads as it does (shown by the report where a method loses to its
  baseline); ``"link"``: where the study is discussed, relative to the result file
  (``"../../README.md#wsss-sipe-vs-multi-label-cam-shapesworld-v15-voc-3-seeds"``) or an http(s) URL.

``benchmarks/results_readme.py`` renders every file into the README between ``<!-- result:<study> -->`` and
``<!-- /result -->`` markers, and a test fails when they disagree.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lowlabel.errors import UserError

ROLES = ("method", "baseline", "ablation", "reference")
OPTIONAL_ROW_FIELDS = ("method", "config", "note", "link")  # one-line strings when present


@dataclass(frozen=True)
class RowSpec:
    """One row of a study: ``run`` label, ``role``, its run folders (one per seed) and the metrics to keep (in
    order; the first is the headline)."""

    run: str
    role: str
    run_dirs: Sequence[Path]
    metrics: Sequence[str]
    metrics_file: str = "metrics.json"  # relative to each run folder (a held-out evaluation may live elsewhere)
    method: str | None = None  # default: the method the runs' env.json names
    config: str | None = None  # default: the stem of the --config the runs' env.json argv names
    note: str | None = None
    link: str | None = None


def _seed(run_dir: Path) -> int | None:
    import yaml

    config = Path(run_dir) / "config.yaml"
    if not config.is_file():
        return None
    data = yaml.safe_load(config.read_text()) or {}
    seed = (data.get("trainer") or {}).get("seed")
    return int(seed) if seed is not None else None


def _identity(run_dir: Path) -> tuple[str | None, str | None]:
    """(method, config name) of a run folder from its ``env.json`` (``method`` and the ``--config`` of ``argv``)."""
    env_path = Path(run_dir) / "env.json"
    try:
        env = json.loads(env_path.read_text()) if env_path.is_file() else {}
    except json.JSONDecodeError:
        return None, None
    if not isinstance(env, dict):
        return None, None
    method = env.get("method") if isinstance(env.get("method"), str) else None
    argv = [str(a) for a in env.get("argv") or []]
    config = None
    for i, arg in enumerate(argv):
        if arg == "--config" and i + 1 < len(argv):
            config = argv[i + 1]
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
    return method, (Path(config).stem if config else None)


def _agreed(values: Sequence[str | None]) -> str | None:
    """The one value every run agrees on, else None."""
    return values[0] if values and values[0] is not None and len(set(values)) == 1 else None


def collect_row(spec: RowSpec) -> dict[str, Any]:
    """Read each run folder's metrics into ``{"run", "role", "seeds", "metrics": {k: {mean, std, values}}}``, plus
    the optional ``method``, ``config``, ``note`` and ``link`` (see the module docstring) when known.

    Raises:
        UserError: an unknown role, a run folder without its metrics file, or a metric missing from one.
    """
    if spec.role not in ROLES:
        raise UserError(f"result row {spec.run!r}: role {spec.role!r} is not one of {', '.join(ROLES)}")
    if not spec.run_dirs:
        raise UserError(f"result row {spec.run!r}: no run folders")
    values: dict[str, list[float]] = {k: [] for k in spec.metrics}
    seeds = []
    for run_dir in spec.run_dirs:
        path = Path(run_dir) / spec.metrics_file
        if not path.is_file():
            raise UserError(f"{path}: not found (result row {spec.run!r})")
        metrics = json.loads(path.read_text())
        for key in spec.metrics:
            if key not in metrics:
                raise UserError(f"{path}: no metric {key!r} (result row {spec.run!r})")
            values[key].append(float(metrics[key]))
        seeds.append(_seed(Path(run_dir)))
    identities = [_identity(Path(d)) for d in spec.run_dirs]
    row: dict[str, Any] = {"run": spec.run, "role": spec.role}
    extra = {"method": spec.method or _agreed([m for m, _ in identities]),
             "config": spec.config or _agreed([c for _, c in identities])}
    row.update({k: v for k, v in extra.items() if v})
    row["seeds"] = seeds
    row["metrics"] = {k: {"mean": statistics.mean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                          "values": v} for k, v in values.items()}
    row.update({k: v for k, v in (("note", spec.note), ("link", spec.link)) if v})
    _check_optional_fields(row, f"result row {spec.run!r}")
    return row


def git_commit(repo: Path) -> str:
    """The checked-out commit of ``repo`` ("unknown" outside a git checkout)."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def runs_commit(rows: Sequence[RowSpec]) -> str | None:
    """The commit every run folder's ``env.json`` records (``+dirty`` when one was made from a modified tree), or
    None when they differ or do not say."""
    seen = set()
    for spec in rows:
        for run_dir in spec.run_dirs:
            env = Path(run_dir) / "env.json"
            git = json.loads(env.read_text()).get("git", {}) if env.is_file() else {}
            if not git.get("commit"):
                return None
            seen.add(git["commit"] + ("+dirty" if git.get("dirty") else ""))
    return seen.pop() if len(seen) == 1 else None


def build_result(study: str, command: str, rows: Sequence[RowSpec], *, repo: Path, shapesworld: str) -> dict[str, Any]:
    """The result document of one study (see the module docstring). Its commit is the one the runs were made with
    (their ``env.json``), else the checked-out one."""
    return {"study": study, "command": command, "commit": runs_commit(rows) or git_commit(repo),
            "date": time.strftime("%Y-%m-%d"), "shapesworld": shapesworld, "rows": [collect_row(r) for r in rows]}


def write_result(path: Path, result: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def read_result(path: Path) -> dict[str, Any]:
    """A result file, checked: one-line errors name the file and what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except OSError as err:
        raise UserError(f"{path}: cannot read result file ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: malformed result file (JSON: {err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: malformed result file (expected a JSON object)")
    for key in ("study", "command", "commit", "date", "shapesworld", "rows"):
        if key not in data:
            raise UserError(f"{path}: malformed result file (no {key!r})")
    if not isinstance(data["rows"], list) or not data["rows"]:
        raise UserError(f"{path}: malformed result file ('rows' must be a non-empty list)")
    for i, row in enumerate(data["rows"]):
        if not isinstance(row, dict) or not {"run", "role", "seeds", "metrics"} <= set(row):
            raise UserError(f"{path}: malformed result file (row {i} needs run, role, seeds and metrics)")
        if row["role"] not in ROLES:
            raise UserError(f"{path}: row {i} ({row['run']!r}) has role {row['role']!r}, not one of {', '.join(ROLES)}")
        if not isinstance(row["metrics"], dict) or not row["metrics"]:
            raise UserError(f"{path}: row {i} ({row['run']!r}) needs at least one metric")
        for name, stat in row["metrics"].items():
            if not isinstance(stat, dict) or not {"mean", "std", "values"} <= set(stat):
                raise UserError(f"{path}: row {i} ({row['run']!r}) metric {name!r} needs mean, std and values")
            values = stat["values"]
            if not (_is_number(stat["mean"]) and _is_number(stat["std"]) and isinstance(values, list)
                    and all(_is_number(v) for v in values)):
                raise UserError(f"{path}: row {i} ({row['run']!r}) metric {name!r}: mean, std and values must be "
                                "numbers")
        _check_optional_fields(row, f"{path}: row {i} ({row['run']!r})")
    source = data.get("source")
    if "source" in data and (not isinstance(source, str) or not source.strip() or "\n" in source):
        raise UserError(f"{path}: malformed result file ('source' must be a one-line string)")
    return data


def _check_optional_fields(row: dict[str, Any], where: str) -> None:
    for key in OPTIONAL_ROW_FIELDS:
        value = row.get(key)
        if key in row and (not isinstance(value, str) or not value.strip() or "\n" in value):
            raise UserError(f"{where}: {key!r} must be a one-line string")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def seed_list(seeds: Sequence[int | None]) -> str:
    """The seeds of a row as text: ``0, 1, 2``; ``?`` for a run that records none; ``none`` when no run does (a
    baseline without training, such as raw-pixel propagation)."""
    if seeds and all(s is None for s in seeds):
        return "none"
    return ", ".join("?" if s is None else str(s) for s in seeds)


# Metrics kept on their own scale rather than in percent (SSIM is a similarity in [0, 1] by convention): shown with
# three decimals, where one would hide every difference.
UNIT_INTERVAL_METRICS = frozenset({"SSIM", "SSIM_input"})


def _cell(stat: dict[str, Any] | None, key: str) -> str:
    """``mean ± std`` of one row's metric (one decimal; three for :data:`UNIT_INTERVAL_METRICS`; no std for one
    value), empty when the row lacks it."""
    if stat is None:
        return ""
    digits = 3 if key in UNIT_INTERVAL_METRICS else 1
    cell = f"{stat['mean']:.{digits}f}"
    return f"{cell} ± {stat['std']:.{digits}f}" if len(stat["values"]) > 1 else cell


def _metric_keys(results: Sequence[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for result in results:
        for row in result["rows"]:
            keys += [k for k in row["metrics"] if k not in keys]
    return keys


def markdown_table(result: dict[str, Any]) -> str:
    """The study as a Markdown table: one column per metric (union, in first-seen order), ``mean ± std`` (one
    decimal; three for :data:`UNIT_INTERVAL_METRICS`), and the seeds; empty cells where a row lacks a metric."""
    keys = _metric_keys([result])
    lines = ["| run | seeds | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for row in result["rows"]:
        cells = [_cell(row["metrics"].get(key), key) for key in keys]
        lines.append(f"| {row['run']} | {seed_list(row['seeds'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_comparison(results: Sequence[dict[str, Any]]) -> str:
    """Studies side by side, e.g. one study in two regimes: one line per run label (first-seen order over the
    studies; rows are matched by their label), and per metric one column per study; empty cells where a study lacks
    the row or the metric. The seeds follow in one column per study."""
    keys = _metric_keys(results)
    labels: list[str] = []
    for result in results:
        labels += [row["run"] for row in result["rows"] if row["run"] not in labels]
    by_label = [{row["run"]: row for row in result["rows"]} for result in results]
    columns = [(key, i) for key in keys for i in range(len(results))]
    head = [f"{key}, {results[i]['study']}" for key, i in columns] + [f"seeds, {r['study']}" for r in results]
    lines = ["| run | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for label in labels:
        cells = [_cell(by_label[i][label]["metrics"].get(key) if label in by_label[i] else None, key)
                 for key, i in columns]
        cells += [seed_list(rows[label]["seeds"]) if label in rows else "" for rows in by_label]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _provenance(result: dict[str, Any]) -> str:
    return (f"`{result['command']}` (commit {result['commit'][:7]}, {result['date']}, "
            f"ShapesWorld {result['shapesworld']})")


def render_readme(text: str, results: dict[str, dict[str, Any]]) -> str:
    """``text`` with the block between ``<!-- result:<study> -->`` and ``<!-- /result -->`` replaced by the
    study's table and its command, for every study in ``results``. ``<!-- result:<a> vs <b> -->`` puts studies side
    by side (:func:`markdown_comparison`), each study's command below.

    Raises:
        UserError: a marker names a study without a result file, or a marker is not closed.
    """
    out, pos = [], 0
    while True:
        start = text.find("<!-- result:", pos)
        if start < 0:
            out.append(text[pos:])
            return "".join(out)
        head_end = text.index("-->", start) + 3
        studies = [s.strip() for s in text[start + len("<!-- result:"):head_end - 3].split(" vs ")]
        end = text.find("<!-- /result -->", head_end)
        if end < 0:
            raise UserError(f"README: the block of result {' vs '.join(studies)!r} is not closed with <!-- /result -->")
        missing = [s for s in studies if s not in results]
        if missing:
            raise UserError(f"README: no benchmarks/results file for study {missing[0]!r}")
        chosen = [results[s] for s in studies]
        if len(chosen) == 1:
            block = f"\n{markdown_table(chosen[0])}\n\n{_provenance(chosen[0])}\n"
            if chosen[0].get("source"):
                block += f"\n{chosen[0]['source']}\n"
        else:  # a list: one item per study, its command, then where its numbers come from when it says
            block = f"\n{markdown_comparison(chosen)}\n\n" + "".join(
                f"- {r['study']}: {_provenance(r)}" + (f". {r['source']}" if r.get("source") else "") + "\n"
                for r in chosen)
        out += [text[pos:head_end], block]
        pos = end
