"""Training curves as PNG figures (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

MAX_CURVES = 9  # subplots per figure; further keys are left out (they stay in logs/metrics.csv)
NCOLS = 3


def curve_order(keys: Sequence[str]) -> list[str]:
    """Losses, then training terms, then headline metrics (``val/MaxBoxAccV2``, ...), then the rest.

    Within each part keys are sorted; headline metrics follow :data:`HEADLINE_METRICS` order.
    """
    from lowlabel.report.comparisons import HEADLINE_METRICS

    def rank(key: str) -> tuple[int, int, str]:
        name = key.rsplit("/", 1)[-1]
        if "loss" in key.lower():
            return (0, 0, key)
        if key.startswith("train/"):
            return (1, 0, key)
        if name in HEADLINE_METRICS:
            return (2, HEADLINE_METRICS.index(name), key)
        return (3, 0, key)

    return sorted(set(keys), key=rank)


def plot_curves(
    series: Sequence[tuple[str, dict[str, list[tuple[int, float]]]]], out_path: Path, *, title: str = ""
) -> Path | None:
    """One subplot per logged key, one line per run; returns the PNG path, or ``None`` when nothing was logged.

    Args:
        series: ``(run label, {key: [(step, value), ...]})`` for each run to draw.
        out_path: where to save the PNG.
        title: figure title.
    """
    keys = curve_order([k for _, curves in series for k, points in curves.items() if points])[:MAX_CURVES]
    if not keys:
        return None
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    nrows = math.ceil(len(keys) / NCOLS)
    ncols = min(NCOLS, len(keys))
    fig = Figure(figsize=(4.0 * ncols, 2.8 * nrows), dpi=80, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        for label, curves in series:
            points = sorted(curves.get(key, []))
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, marker="o" if len(points) < 8 else None, ms=3, label=_plain(label))
        ax.set_title(_plain(key), fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    if len(series) > 1:
        axes.flat[0].legend(fontsize=7)
    if title:
        fig.suptitle(_plain(title), fontsize=11)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path)
    return out_path


def _plain(text: str) -> str:
    """Escape ``$`` so that matplotlib does not read run or key names as mathtext."""
    return text.replace("$", r"\$")
