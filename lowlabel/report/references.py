"""Reference results beside a report's comparisons: the study result files of ``benchmarks/results/``.

``lowlabel report RUN_DIR... --reference DIR`` reads every ``DIR/*.json`` (the format of
:mod:`lowlabel.report.results`). A comparison of method ``M`` against baseline ``B`` gets, from each file, the rows
whose ``method`` field is ``M`` (role ``method``) and ``B`` (role ``baseline``); rows without a ``method`` field (older
files) match nothing. The report shows their mean ± std over seeds, the seeds, the reproducing command, commit and
date, and, where the method loses, the row's ``note`` and ``link``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lowlabel.errors import UserError
from lowlabel.report.results import read_result


@dataclass(frozen=True)
class ReferenceRow:
    """One row of a study result file.

    Attributes:
        label: the row's ``run`` text.
        role: ``method``, ``baseline``, ``ablation`` or ``reference``.
        method: its ``method`` field.
        config: its ``config`` field, when given.
        seeds: the training seeds (None where unknown).
        metrics: ``{key: {"mean", "std", "values"}}`` in file order (the first is the study's headline metric).
        note: its ``note`` field, when given.
        link: its ``link`` field as written, when given.
    """

    label: str
    role: str
    method: str
    config: str | None
    seeds: list[int | None]
    metrics: dict[str, dict[str, Any]]
    note: str | None = None
    link: str | None = None


@dataclass(frozen=True)
class Link:
    """Where a study is discussed: ``href`` (None when the file it names does not exist) and its display text."""

    href: str | None
    text: str


@dataclass(frozen=True)
class Reference:
    """One study's method row against its baseline row, with the study's provenance."""

    study: str
    path: Path
    command: str
    commit: str
    date: str
    shapesworld: str
    method: ReferenceRow
    baseline: ReferenceRow

    def metric(self, preferred: str | None = None) -> str | None:
        """``preferred`` when both rows report it, else the method row's first metric the baseline row also has."""
        shared = [k for k in self.method.metrics if k in self.baseline.metrics]
        if preferred in shared:
            return preferred
        return shared[0] if shared else None

    @property
    def note(self) -> str | None:
        """The method row's note, else the baseline row's."""
        return self.method.note or self.baseline.note

    @property
    def link(self) -> Link | None:
        """The method row's link (else the baseline row's), resolved against the result file's folder."""
        raw = self.method.link or self.baseline.link
        return resolve_link(raw, self.path.parent) if raw else None


@dataclass(frozen=True)
class ReferenceSet:
    """Every result file of a reference folder."""

    folder: Path
    files: dict[Path, dict[str, Any]]

    def matching(self, method: str, baseline: str) -> list[Reference]:
        """The studies' rows of ``method`` (role method) against ``baseline`` (role baseline), file by file.

        In a file with several baseline rows of ``baseline``, a method row pairs with the one of its own config
        (else the first).
        """
        out = []
        for path, result in self.files.items():
            rows = [_row(raw) for raw in result["rows"] if isinstance(raw.get("method"), str)]
            methods = [r for r in rows if r.role == "method" and r.method == method]
            bases = [r for r in rows if r.role == "baseline" and r.method == baseline]
            for row in methods:
                if not bases:
                    break
                base = next((b for b in bases if b.config and b.config == row.config), bases[0])
                out.append(
                    Reference(
                        study=str(result["study"]),
                        path=path,
                        command=str(result["command"]),
                        commit=str(result["commit"]),
                        date=str(result["date"]),
                        shapesworld=str(result["shapesworld"]),
                        method=row,
                        baseline=base,
                    )
                )
        return out


def load_references(folder: Path) -> ReferenceSet:
    """Read every ``*.json`` result file of ``folder``, checked.

    Raises:
        UserError: the folder does not exist or holds no result file, or a file is malformed (one line naming it).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: reference folder not found")
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise UserError(f"{folder}: no result files (*.json) in the reference folder")
    return ReferenceSet(folder=folder, files={p: read_result(p) for p in paths})


def resolve_link(raw: str, base: Path) -> Link:
    """A row's ``link``: an http(s) URL as it is; a path (``../../README.md#section``) relative to ``base``.

    A path to a Markdown file shows the heading its ``#fragment`` names (GitHub's anchor rule); a path to a file
    that does not exist keeps its text and gets no ``href``.
    """
    if raw.startswith(("http://", "https://")):
        return Link(href=raw, text=raw)
    target_text, _, fragment = raw.partition("#")
    target = (base / target_text).resolve()
    if not target.is_file():
        return Link(href=None, text=raw)
    if not fragment:
        return Link(href=target.as_uri(), text=target.name)
    heading = markdown_heading(target, fragment) if target.suffix.lower() == ".md" else None
    return Link(
        href=f"{target.as_uri()}#{fragment}",
        text=f"{target.name}, section “{heading}”" if heading else f"{target.name}#{fragment}",
    )


def markdown_heading(path: Path, fragment: str) -> str | None:
    """The text of the heading of Markdown file ``path`` whose GitHub anchor is ``fragment`` (None when none is)."""
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match and github_anchor(match.group(1)) == fragment:
            return match.group(1).replace("`", "")
    return None


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces to ``-``
    (``"WSSS: SIPE vs CAM (v1.5 `voc/`)"`` -> ``"wsss-sipe-vs-cam-v15-voc"``)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _row(raw: dict[str, Any]) -> ReferenceRow:
    return ReferenceRow(
        label=str(raw["run"]),
        role=str(raw["role"]),
        method=raw["method"],
        config=raw.get("config"),
        seeds=list(raw["seeds"]),
        metrics=dict(raw["metrics"]),
        note=raw.get("note"),
        link=raw.get("link"),
    )
