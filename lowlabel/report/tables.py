"""HTML tables: the method-vs-baseline summary (mean ± std over seeds, best in bold) and per-class tables.

Every string that comes from a run (method names, class names, metric keys) is HTML-escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from lowlabel.report.comparisons import HEADLINE_METRICS, Comparison, lower_is_better, metric_order
from lowlabel.report.runs import RunGroup


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (``ddof=1``; 0 for one value) of ``n`` values."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat | None:
        """The statistic of ``values``, or ``None`` when there are none."""
        n = len(values)
        if n == 0:
            return None
        mean = math.fsum(values) / n
        var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
        return cls(mean=mean, std=math.sqrt(var), n=n)

    def text(self, digits: int = 2) -> str:
        """``"71.23"`` for one value, ``"71.23 ± 0.40"`` for several."""
        if self.n == 1:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def best_indices(stats: Sequence[Stat | None], *, lower: bool) -> set[int]:
    """Indices of the best means (all of them on a tie); empty when fewer than two values exist."""
    present = [(i, s.mean) for i, s in enumerate(stats) if s is not None]
    if len(present) < 2:
        return set()
    target = min(m for _, m in present) if lower else max(m for _, m in present)
    return {i for i, m in present if m == target}


def table_keys(comparison: Comparison, *, headline_only: bool) -> list[str]:
    """The metric columns: every key in display order, or only the headline ones (all keys when none is one)."""
    keys = metric_order(sorted({k for g in comparison.groups for r in g.runs for k in r.metrics}))
    if headline_only:
        return [k for k in keys if k in HEADLINE_METRICS] or keys
    return keys


def summary_table(comparison: Comparison, *, headline_only: bool = False) -> str:
    """One row per run group (baseline first), one column per metric; the best value of each column in bold."""
    groups = comparison.groups
    keys = table_keys(comparison, headline_only=headline_only)
    stats = {k: [Stat.of(g.values(k)) for g in groups] for k in keys}
    best = {k: best_indices(stats[k], lower=lower_is_better(k)) for k in keys}
    head = "".join(f"<th>{escape(k)}</th>" for k in keys)
    rows = []
    for i, group in enumerate(groups):
        role = "baseline" if i < len(comparison.baseline) else "method"
        cells = "".join(_cell(stats[k][i], k, i in best[k]) for k in keys)
        seeds = ", ".join(str(r.seed) for r in group.runs if r.seed is not None) or "-"
        rows.append(
            f'<tr class="{role}" data-method="{escape(group.method)}"><th scope="row">{escape(group.label)}</th>'
            f"<td>{escape(role)}</td><td>{escape(seeds)}</td>{cells}</tr>"
        )
    return (
        f'<table class="summary"><thead><tr><th>run</th><th>role</th><th>seeds</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def per_class_tables(comparison: Comparison) -> list[str]:
    """One table per per-class metric found in the comparison's runs: classes as rows, run groups as columns."""
    groups = comparison.groups
    metrics = sorted({m for g in groups for r in g.runs for m in r.per_class})
    return [_per_class_table(metric, groups) for metric in metrics]


def _per_class_table(metric: str, groups: Sequence[RunGroup]) -> str:
    classes: list[str] = []
    for g in groups:
        for r in g.runs:
            classes += [c for c in r.per_class.get(metric, {}) if c not in classes]
    lower = lower_is_better(metric)
    head = "".join(f"<th>{escape(g.label)}</th>" for g in groups)
    rows = []
    for cls in classes:
        stats = [Stat.of(_class_values(g, metric, cls)) for g in groups]
        best = best_indices(stats, lower=lower)
        cells = "".join(_cell(s, metric, i in best) for i, s in enumerate(stats))
        rows.append(f'<tr><th scope="row">{escape(cls)}</th>{cells}</tr>')
    return (
        f'<table class="per-class"><caption>{escape(metric)} per class</caption>'
        f"<thead><tr><th>class</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _class_values(group: RunGroup, metric: str, cls: str) -> list[float]:
    values = [r.per_class.get(metric, {}).get(cls) for r in group.runs]
    return [v for v in values if v is not None and math.isfinite(v)]


def _cell(stat: Stat | None, key: str, bold: bool) -> str:
    if stat is None:
        return f'<td data-metric="{escape(key)}">–</td>'
    text = escape(stat.text())
    body = f"<strong>{text}</strong>" if bold else text
    return f'<td data-metric="{escape(key)}" data-mean="{stat.mean!r}">{body}</td>'


def headline_metric(comparison: Comparison) -> str | None:
    """The first metric of :data:`HEADLINE_METRICS` order that every group of the comparison reports."""
    groups = comparison.groups
    keys = metric_order(sorted({k for g in groups for r in g.runs for k in r.metrics}))
    for key in keys:
        if all(g.values(key) for g in groups):
            return key
    return None


def headline_rows(comparisons: Sequence[Comparison]) -> list[tuple[str, str, str, str, str]]:
    """``(comparison, metric, baseline text, method text, delta text)`` per comparison that has a baseline.

    The delta is the method's mean minus the baseline's mean (first group of each side).
    """
    rows = []
    for comp in comparisons:
        key = headline_metric(comp)
        if not comp.baseline or not comp.method or key is None:
            continue
        base, meth = Stat.of(comp.baseline[0].values(key)), Stat.of(comp.method[0].values(key))
        if base is None or meth is None:
            continue
        rows.append((comp.title, key, base.text(), meth.text(), f"{meth.mean - base.mean:+.2f}"))
    return rows


def headline_table(comparisons: Sequence[Comparison]) -> str:
    """Each method against its baseline on its headline metric ("" when no comparison has a baseline)."""
    rows = headline_rows(comparisons)
    if not rows:
        return ""
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        '<table class="headline"><thead><tr><th>comparison</th><th>metric</th><th>baseline</th><th>method</th>'
        f"<th>Δ</th></tr></thead><tbody>{body}</tbody></table>"
    )


def summary_markdown(comparisons: Sequence[Comparison]) -> str:
    """The headline summary tables as Markdown (for a README): one table per comparison, best value in bold."""
    parts = []
    for comp in comparisons:
        groups = comp.groups
        keys = table_keys(comp, headline_only=True)
        stats = {k: [Stat.of(g.values(k)) for g in groups] for k in keys}
        best = {k: best_indices(stats[k], lower=lower_is_better(k)) for k in keys}
        lines = [f"**{_md(comp.title)}**", "", "| run | " + " | ".join(_md(k) for k in keys) + " |",
                 "|---" * (len(keys) + 1) + "|"]
        for i, group in enumerate(groups):
            cells = []
            for k in keys:
                s = stats[k][i]
                text = "–" if s is None else s.text()
                cells.append(f"**{text}**" if i in best[k] else text)
            lines.append(f"| {_md(group.label)} | " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _md(text: str) -> str:
    """Markdown-table-safe text: pipes escaped, HTML-escaped (GitHub renders inline HTML)."""
    return escape(text).replace("|", "\\|")
