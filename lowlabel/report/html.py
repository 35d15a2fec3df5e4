"""The static HTML report: one ``index.html`` plus PNG files in ``assets/``, no script and no network.

The page works from ``file://``: CSS is inline, images are relative files, and a strict
Content-Security-Policy forbids every fetch that is not a local image. Every string that comes from
a run (names, class names, captions, file names, config and environment text) is HTML-escaped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from html import escape
from pathlib import Path

import numpy as np
from PIL import Image

from lowlabel.report.comparisons import Comparison, build_comparisons
from lowlabel.report.figures import plot_curves
from lowlabel.report.panels import Panel, draw_panel
from lowlabel.report.references import ReferenceSet, load_references
from lowlabel.report.runs import Run, expand_run_dirs, group_runs, load_run
from lowlabel.report.tables import (
    comparison_facts,
    headline_table,
    headlines,
    per_class_tables,
    summary_markdown,
    summary_table,
)
from lowlabel.samples import NUM_FIXED, load_sample, safe_name

TILE_DISPLAY = 170  # CSS pixels of a panel tile's long side, so a method and its baseline fit side by side
CSP = "default-src 'none'; img-src 'self' file: data:; style-src 'unsafe-inline'"
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;
color:#222;line-height:1.4}
h1{margin-bottom:0}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
.meta{color:#666;font-size:.9em}
.scroll{overflow-x:auto}
table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:right;white-space:nowrap}
th[scope=row],thead th{text-align:left;background:#f4f4f4}
tr.method th[scope=row]{background:#e8f0fe}
.headline td:nth-child(-n+2),.headline td:nth-child(n+6){text-align:left}
.headline td:first-child,.headline td:nth-child(n+7){white-space:normal}
.headline td.reading{min-width:16em}
.headline tr.reference td{background:#f6f8fa}
.headline tr.reference td:first-child{padding-left:1.6em}
.headline tr.one-seed td.reading{color:#8a5300}
.headline tr.behind td.reading{color:#a31515}
.headline td[colspan]{white-space:normal;text-align:left;font-size:.85em;color:#444}
.headline .wide{width:0;min-width:100%}
.headline tr.reference-source td{background:#f6f8fa}
.headline tr.losing td{background:#fdecea;color:#7a1010;font-size:.9em}
.headline code{overflow-wrap:anywhere}
.facts{color:#555;font-size:.85em;margin:-.6em 0 .4em}
caption{text-align:left;font-weight:600;padding:.2em 0}
.row{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start;margin:.5em 0 1.2em}
.row.same-image{flex-wrap:nowrap;overflow-x:auto}
figure{margin:0;border:1px solid #ddd;border-radius:4px;padding:.4em;background:#fafafa}
figure .tiles{display:flex;gap:.3em}
figure .tile{display:flex;flex-direction:column;align-items:center;font-size:.75em;color:#555}
figcaption{font-size:.8em;margin-top:.3em;max-width:60em;overflow-wrap:anywhere}
.run-label{font-weight:600;font-size:.85em;margin-bottom:.3em}
.legend{display:flex;flex-wrap:wrap;gap:.6em;font-size:.75em;margin-top:.3em}
.swatch{display:inline-block;width:.9em;height:.9em;border:1px solid #888;vertical-align:middle;margin-right:.25em}
details{margin:.4em 0;border:1px solid #ddd;border-radius:4px;padding:.3em .6em}
summary{cursor:pointer;font-weight:600}
pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.8em}
.missing{color:#999;font-style:italic}
img{image-rendering:pixelated}
"""


class _Assets:
    """Writes PNG files into ``<out>/assets/`` under unique names and returns their relative paths."""

    def __init__(self, out_dir: Path) -> None:
        self.folder = out_dir / "assets"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.count = 0

    def path(self, stem: str) -> tuple[Path, str]:
        self.count += 1
        name = f"{self.count:04d}-{safe_name(stem)[:80]}.png"
        return self.folder / name, f"assets/{name}"

    def image(self, stem: str, array: np.ndarray) -> str:
        path, rel = self.path(stem)
        Image.fromarray(array).save(path)
        return rel


def write_report(
    run_dirs: Sequence[Path], out_dir: Path, *, title: str = "lowlabel report", max_samples: int = 6,
    max_failures: int = 6, reference: Path | None = None,
) -> Path:
    """Read the runs, write ``<out_dir>/index.html`` with its assets (and ``summary.md``), return the HTML path.

    Args:
        run_dirs: run folders, or folders holding run folders.
        out_dir: output folder (created).
        title: page title.
        max_samples: images per comparison in the qualitative section.
        max_failures: images per run in the failure gallery.
        reference: a folder of study result files (``benchmarks/results``) whose rows of the same method and
            baseline are shown beside each comparison.
    """
    references = load_references(Path(reference)) if reference is not None else None  # bad input fails first
    runs = [load_run(p) for p in expand_run_dirs(run_dirs)]
    comparisons = build_comparisons(group_runs(runs))
    out_dir = Path(out_dir)
    assets = _Assets(out_dir)
    headline = headline_table(headlines(comparisons, references),
                              reference_folder=references.folder if references else None)
    headline = f'<div class="scroll">{headline}</div>' if headline else ""
    sections = [
        ("summary", "Summary", _references_note(references) + headline
         + "".join(_summary_section(c) for c in comparisons)),
        ("per-class", "Per-class results", "".join(_per_class_section(c) for c in comparisons)),
        ("curves", "Training curves", "".join(_curves_section(c, assets) for c in comparisons)),
        ("qualitative", "Qualitative results", "".join(_samples_section(c, assets, max_samples) for c in comparisons)),
        ("failures", "Failure gallery", "".join(_failures_section(c, assets, max_failures) for c in comparisons)),
        ("runs", "Runs: configuration and environment", "".join(_run_details(r) for r in runs)),
    ]
    body = "".join(
        f'<section id="{sid}"><h2>{escape(name)}</h2>{content or _missing("nothing to show")}</section>'
        for sid, name, content in sections
    )
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="meta">{len(runs)} run(s), generated {stamp}. '
        "Numbers are mean ± sample std over seeds where a config has several runs; the best value is bold.</p>"
        f"{body}</body></html>\n"
    )
    index = out_dir / "index.html"
    index.write_text(page, encoding="utf-8")
    (out_dir / "summary.md").write_text(summary_markdown(comparisons), encoding="utf-8")
    return index


def _references_note(references: ReferenceSet | None) -> str:
    """Where the reference rows come from (nothing without a reference folder)."""
    if references is None:
        return ""
    names = ", ".join(p.name for p in references.files)
    return (f'<p class="meta references">Reference rows (indented) are study results read from '
            f"<code>{escape(str(references.folder.resolve()))}</code> ({escape(names)}): mean ± sample std over the "
            "seeds listed.</p>")


def _summary_section(comp: Comparison) -> str:
    """Headline metrics, with every metric of ``metrics.json`` folded away below when there are more."""
    head, full = summary_table(comp, headline_only=True), summary_table(comp)
    more = f"<details><summary>all metrics</summary>{full}</details>" if full != head else ""
    facts = f'<p class="facts">{escape(comparison_facts(comp))}</p>'
    return f'<h3>{escape(comp.title)}</h3>{facts}<div class="scroll">{head}{more}</div>'


def _per_class_section(comp: Comparison) -> str:
    tables = per_class_tables(comp)
    return f'<h3>{escape(comp.title)}</h3><div class="scroll">{"".join(tables)}</div>' if tables else ""


def _curves_section(comp: Comparison, assets: _Assets) -> str:
    series = [(run.label, run.curves) for g in comp.groups for run in g.runs]
    path, rel = assets.path(f"curves-{comp.title}")
    if plot_curves(series, path, title=comp.title) is None:
        return ""
    return f'<h3>{escape(comp.title)}</h3><img src="{escape(rel)}" alt="{escape("training curves " + comp.title)}">'


def _samples_section(comp: Comparison, assets: _Assets, max_samples: int) -> str:
    """The same fixed images for the first run of every group (baseline first), one row per image."""
    runs = [g.runs[0] for g in comp.groups]
    ids = _common_sample_ids(runs)[:max_samples]
    if not ids:
        return ""
    rows = []
    for image_id in ids:
        figs = [_panel_figure(run, image_id, assets, label=run.label) for run in runs]
        rows.append(f'<div class="row same-image">{"".join(figs)}</div>')  # baseline and method on one row, always
    return f'<h3>{escape(comp.title)}</h3>{"".join(rows)}'


def _failures_section(comp: Comparison, assets: _Assets, max_failures: int) -> str:
    """The lowest-scoring images (among those with a saved sample) of each group's first run, by ``per_image.csv``."""
    parts = []
    for group in comp.groups:
        run = group.runs[0]
        scores = run.per_image()
        if not scores:
            continue
        stems = run.sample_paths()
        ranked = sorted(scores.items(), key=lambda kv: (kv[1], kv[0]))
        worst = [(i, s) for i, s in ranked if safe_name(i) in stems][:max_failures]
        if not worst:
            continue
        figs = [_panel_figure(run, i, assets, label=f"score {s:.3f}") for i, s in worst]
        parts.append(f'<h3>{escape(run.label)}</h3><div class="row">{"".join(figs)}</div>')
    return "".join(parts)


def _panel_figure(run: Run, image_id: str, assets: _Assets, *, label: str) -> str:
    path = run.sample_paths().get(safe_name(image_id))
    head = f'<div class="run-label">{escape(label)}</div>'
    if path is None:
        return f'<figure>{head}<div class="missing">no sample saved for {escape(image_id)}</div></figure>'
    panel = draw_panel(load_sample(path))
    return f"<figure>{head}{_panel_html(panel, assets, stem=f'{run.name}-{image_id}')}</figure>"


def _panel_html(panel: Panel, assets: _Assets, *, stem: str) -> str:
    tiles = []
    for t in panel.tiles:
        h, w = t.image.shape[:2]
        shown = min(1.0, TILE_DISPLAY / max(h, w))  # CSS size; the PNG keeps every pixel
        src = escape(assets.image(f"{stem}-{t.title}", t.image))
        tiles.append(f'<div class="tile"><img src="{src}" width="{round(w * shown)}" height="{round(h * shown)}" '
                     f'alt="{escape(t.title)}">{escape(t.title)}</div>')
    legend = "".join(
        f'<span><span class="swatch" style="background:rgb({r},{g},{b})"></span>{escape(name)}</span>'
        for name, (r, g, b) in panel.legend
    )
    legend_html = f'<div class="legend">{legend}</div>' if legend else ""
    return f'<div class="tiles">{"".join(tiles)}</div>{legend_html}<figcaption>{escape(panel.caption)}</figcaption>'


def _common_sample_ids(runs: Sequence[Run]) -> list[str]:
    """The fixed sample ids shared by all ``runs``, in sorted order.

    Evaluation saves samples for the first :data:`NUM_FIXED` ids of the split in sorted order (the
    fixed ones) plus the worst ones, so the fixed ids are the longest prefix (at most ``NUM_FIXED``)
    of the sorted ``per_image.csv`` ids that have a sample (files are named ``safe_name(id)``).
    Without ``per_image.csv`` every sample counts.
    """
    common: list[str] | None = None
    for run in runs:
        stems = run.sample_paths()
        ids: list[str] = []
        for image_id in sorted(run.per_image())[:NUM_FIXED]:
            if safe_name(image_id) not in stems:
                break
            ids.append(image_id)
        ids = ids or sorted(stems)
        common = ids if common is None else [i for i in common if i in set(ids)]
    return common or []


def _run_details(run: Run) -> str:
    metrics = "\n".join(f"{k}: {v:g}" for k, v in sorted(run.metrics.items()))
    parts = [
        f"<h4>metrics.json (split {escape(run.split)})</h4><pre>{escape(metrics)}</pre>",
        f"<h4>config.yaml</h4><pre>{escape(run.config_text) or '(missing)'}</pre>",
        f"<h4>env.json</h4><pre>{escape(run.env_text) or '(missing)'}</pre>",
    ]
    return (
        f"<details><summary>{escape(run.method)} · {escape(run.name)} "
        f'<span class="meta">{escape(str(run.path))}</span></summary>{"".join(parts)}</details>'
    )


def _missing(text: str) -> str:
    return f'<p class="missing">{escape(text)}</p>'
