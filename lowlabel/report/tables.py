"""HTML tables: the headline (each method against its baseline, labelled with how it reads, with reference study
rows), the method-vs-baseline summary (mean ± std over seeds, best in bold) and per-class tables.

Every string that comes from a run (method names, class names, metric keys) is HTML-escaped here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from lowlabel.report.comparisons import (
    BASELINES,
    HEADLINE_METRICS,
    Comparison,
    baseline_title,
    lower_is_better,
    metric_order,
)
from lowlabel.report.references import Reference, ReferenceSet
from lowlabel.report.results import seed_list
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


# How a method's mean reads against its baseline's (see :func:`reading`).
ONE_SEED, AHEAD, BEHIND, LEVEL = "one-seed", "ahead", "behind", "level"
# reading -> (label, the rest of its sentence); the label is shown in bold.
READINGS = {
    ONE_SEED: ("not a comparison", ": one seed, so the difference is noise"),
    AHEAD: ("method ahead", " by more than twice the seed std"),
    BEHIND: ("method behind", " by more than twice the seed std"),
    LEVEL: ("level", ": the difference is within twice the seed std"),
}


def reading_text(verdict: str) -> str:
    """The sentence of a :func:`reading` (``"not a comparison: one seed, so the difference is noise"``)."""
    label, rest = READINGS[verdict]
    return label + rest


def reading(baseline: Stat, method: Stat, *, lower: bool) -> str:
    """:data:`ONE_SEED` when a side has one value; else :data:`AHEAD` / :data:`BEHIND` when the method's mean is
    better / worse than the baseline's by more than twice the larger seed std (the README's criterion), else
    :data:`LEVEL`."""
    if min(baseline.n, method.n) < 2:
        return ONE_SEED
    gain = (method.mean - baseline.mean) * (-1.0 if lower else 1.0)
    spread = 2.0 * max(baseline.std, method.std)
    return AHEAD if gain > spread else BEHIND if gain < -spread else LEVEL


@dataclass(frozen=True)
class HeadlineRow:
    """A method against its baseline on one metric: this report's runs, or a reference study (``source``)."""

    title: str
    metric: str
    baseline: Stat | None
    method: Stat | None
    seeds: str
    budget: str
    source: Reference | None = None

    @property
    def delta(self) -> str:
        """The method's mean minus the baseline's, signed ("–" when a side is missing)."""
        if self.baseline is None or self.method is None:
            return "–"
        return f"{self.method.mean - self.baseline.mean:+.2f}"

    @property
    def reading(self) -> str | None:
        """:func:`reading` of the two sides (None when a side is missing)."""
        if self.baseline is None or self.method is None:
            return None
        return reading(self.baseline, self.method, lower=lower_is_better(self.metric))


@dataclass(frozen=True)
class Headline:
    """A comparison's headline row and, when a reference folder was given, the matching reference rows."""

    comparison: Comparison
    row: HeadlineRow
    baseline_name: str
    references: list[HeadlineRow] | None


def seeds_text(baseline: Sequence[int | None], method: Sequence[int | None]) -> str:
    """``"seed 0"`` or ``"3 seeds (0, 1, 2)"`` when both sides ran the same seeds, else ``"2 seeds / 1 seed"``."""

    listed = seed_list
    if list(baseline) == list(method) or not baseline or not method:
        seeds = list(baseline or method)
        return f"seed {listed(seeds)}" if len(seeds) == 1 else f"{len(seeds)} seeds ({listed(seeds)})"
    return " / ".join(f"{len(s)} seed{'s' * (len(s) != 1)}" for s in (baseline, method))


def budget_text(groups: Sequence[RunGroup]) -> str:
    """The runs' training budget and data, e.g. ``"40 steps, ShapesWorld quick"`` (``"40 / 60 steps"`` when the
    groups differ; "" when the configs say neither)."""
    steps = list(dict.fromkeys(r.steps for g in groups for r in g.runs if r.steps))
    data = list(dict.fromkeys(r.data_name for g in groups for r in g.runs if r.data_name))
    parts = [" / ".join(str(s) for s in steps) + " steps"] if steps else []
    return ", ".join(parts + [" / ".join(data)] if data else parts)


def headlines(comparisons: Sequence[Comparison], references: ReferenceSet | None = None) -> list[Headline]:
    """The headline row of each comparison whose method has a baseline, with its reference rows.

    A comparison needs runs on both sides, or (when ``references`` is given) runs of a method with a baseline in
    :data:`BASELINES`. Each side is its first group; the metric is :func:`headline_metric`.
    """
    out = []
    for comp in comparisons:
        if not comp.method:
            continue
        method_name = comp.method[0].method
        base_name = comp.baseline[0].method if comp.baseline else BASELINES.get(method_name)
        shown_base = baseline_title(method_name) if method_name in BASELINES else base_name
        if base_name is None or (not comp.baseline and references is None):
            continue
        key = headline_metric(comp)
        if key is None:
            continue
        base_group = comp.baseline[0] if comp.baseline else None
        meth_group = comp.method[0]
        row = HeadlineRow(
            title=comp.title if base_group else f"{comp.title} (no {shown_base} run)",
            metric=key,
            baseline=Stat.of(base_group.values(key)) if base_group else None,
            method=Stat.of(meth_group.values(key)),
            seeds=seeds_text([r.seed for r in base_group.runs] if base_group else [],
                             [r.seed for r in meth_group.runs]),
            budget=budget_text([g for g in (base_group, meth_group) if g is not None]),
        )
        refs = None
        if references is not None:
            refs = [_reference_row(ref, key) for ref in references.matching(method_name, base_name)]
            refs = [r for r in refs if r is not None]
        out.append(Headline(comparison=comp, row=row, baseline_name=shown_base, references=refs))
    return out


def _reference_row(ref: Reference, preferred: str) -> HeadlineRow | None:
    key = ref.metric(preferred)
    if key is None:
        return None
    configs = list(dict.fromkeys(c for c in (ref.baseline.config, ref.method.config) if c))
    budget = ", ".join(([" / ".join(configs) + " config"] if configs else []) + [f"ShapesWorld {ref.shapesworld}"])
    return HeadlineRow(title=f"reference: {ref.study}", metric=key, baseline=_stat(ref.baseline.metrics[key]),
                       method=_stat(ref.method.metrics[key]), seeds=seeds_text(ref.baseline.seeds, ref.method.seeds),
                       budget=budget, source=ref)


def _stat(entry: dict[str, Any]) -> Stat:
    """A result file's ``{"mean", "std", "values"}`` (checked by ``read_result``) as a :class:`Stat`."""
    return Stat(mean=float(entry["mean"]), std=float(entry["std"]), n=max(len(entry["values"]), 1))


HEADLINE_COLUMNS = ("comparison", "metric", "baseline", "method", "Δ", "seeds", "budget", "reading")


def headline_table(items: Sequence[Headline], *, reference_folder: Path | None = None) -> str:
    """Each method against its baseline on its headline metric, each reading labelled ("not a comparison" at one
    seed), followed by its reference rows (command, commit, date; a losing line with the study's note and link).
    "" when there is nothing to show."""
    if not items:
        return ""
    span = len(HEADLINE_COLUMNS)
    body = []
    for item in items:
        body.append(_headline_tr(item.row, "run", item.comparison.title))
        if item.references is None:
            continue
        if not item.references:
            pair = f"{item.comparison.method[0].method} vs {item.baseline_name}"
            where = f" in {reference_folder}" if reference_folder else ""
            body.append(_wide_tr("no-reference", span, escape(f"no reference result for {pair}{where}")))
        for ref_row in item.references:
            body.append(_headline_tr(ref_row, "reference", item.comparison.title))
            body.append(_source_tr(ref_row, span))
            if ref_row.reading == BEHIND:
                body.append(_losing_tr(ref_row, item, span))
    head = "".join(f"<th>{escape(c)}</th>" for c in HEADLINE_COLUMNS)
    return f'<table class="headline"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _headline_tr(row: HeadlineRow, kind: str, comparison: str) -> str:
    verdict = row.reading
    bold, rest = READINGS[verdict] if verdict else ("no baseline run", "")
    cells = [row.title, row.metric, row.baseline.text() if row.baseline else "–",
             row.method.text() if row.method else "–", row.delta, row.seeds, row.budget or "–"]
    tds = "".join(f"<td>{escape(c)}</td>" for c in cells)
    label = f"<strong>{escape(bold)}</strong>{escape(rest)}"
    return (f'<tr class="{kind} {verdict or "unpaired"}" data-comparison="{escape(comparison)}">{tds}'
            f'<td class="reading">{label}</td></tr>')


def _source_tr(row: HeadlineRow, span: int) -> str:
    ref = row.source
    assert ref is not None
    runs = f"{ref.method.label} vs {ref.baseline.label}"
    note = f" {escape(ref.note)}" if ref.note and row.reading != BEHIND else ""
    return _wide_tr("reference-source", span, f"{escape(runs)}. Reproduce: <code>{escape(ref.command)}</code> "
                    f"(commit {escape(ref.commit[:7])}, {escape(ref.date)}; {escape(ref.path.name)}).{note}")


def _losing_tr(row: HeadlineRow, item: Headline, span: int) -> str:
    ref = row.source
    assert ref is not None and row.baseline is not None and row.method is not None
    gap = abs(row.method.mean - row.baseline.mean)
    text = (f"In the reference study {ref.study}, {item.comparison.method[0].method} loses to {item.baseline_name} "
            f"by {gap:.1f} {row.metric}.")
    note = (ref.note or "").rstrip()
    why = f" Why: {escape(note)}{'' if note.endswith(('.', '!', '?')) else '.'}" if note else ""
    link = ref.link
    see = ""
    if link is not None:
        target = f'<a href="{escape(link.href)}">{escape(link.text)}</a>' if link.href else escape(link.text)
        see = f" See {target}."
    return _wide_tr("losing", span, f"{escape(text)}{why}{see}")


def _wide_tr(cls: str, span: int, html: str) -> str:
    """A row of one cell across the table; its text wraps to the table's width instead of widening it."""
    return f'<tr class="{cls}"><td colspan="{span}"><div class="wide">{html}</div></td></tr>'


def comparison_facts(comparison: Comparison) -> str:
    """One line for a comparison's title: the seeds, the budget and, against a baseline, how the headline metric
    reads (``"seed 0 · 40 steps, ShapesWorld quick · not a comparison: one seed, so the difference is noise"``)."""
    base = comparison.baseline[0] if comparison.baseline else None
    meth = comparison.method[0] if comparison.method else None
    parts = [seeds_text([r.seed for r in base.runs] if base else [], [r.seed for r in meth.runs] if meth else []),
             budget_text(comparison.groups)]
    key = headline_metric(comparison)
    if base is not None and meth is not None and key is not None:
        b, m = Stat.of(base.values(key)), Stat.of(meth.values(key))
        if b is not None and m is not None:
            verdict = reading(b, m, lower=lower_is_better(key))
            parts.append(reading_text(verdict) if verdict == ONE_SEED else f"{key}: {reading_text(verdict)}")
    return " · ".join(p for p in parts if p)


def summary_markdown(comparisons: Sequence[Comparison]) -> str:
    """The headline summary tables as Markdown (for a README): one table per comparison, best value in bold."""
    parts = []
    for comp in comparisons:
        groups = comp.groups
        keys = table_keys(comp, headline_only=True)
        stats = {k: [Stat.of(g.values(k)) for g in groups] for k in keys}
        best = {k: best_indices(stats[k], lower=lower_is_better(k)) for k in keys}
        lines = [f"**{_md(comp.title)}** ({_md(comparison_facts(comp))})", "",
                 "| run | " + " | ".join(_md(k) for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
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
