"""Which method is compared with which baseline, and which metrics are the headline ones.

This is the one place that knows method names in the report: adding a method with a baseline is
one line in :data:`BASELINES`, and its headline metric keys go in :data:`HEADLINE_METRICS`. A baseline that is the
method itself with a part switched off (ContrastCorr's intra-only training) is also a line of
:data:`BASELINE_SWITCHES`: the config values that make a run of the method a baseline run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lowlabel.report.runs import RunGroup

# method -> the baseline it must beat (DESIGN.md section 1).
BASELINES: dict[str, str] = {
    "da_wsol": "cam",
    "sipe": "mlcam",
    "lgcl": "cut",
    "contrastcorr": "contrastcorr",
}

# method -> (the baseline's name, the dotted config values of its runs) where the baseline is the method itself
# with something switched off; `lowlabel demo` trains it with these values as overrides.
BASELINE_SWITCHES: dict[str, tuple[str, dict[str, object]]] = {
    "contrastcorr": ("intra-only", {"contrastcorr.use_inter": False}),
}


def baseline_title(method: str) -> str:
    """How the baseline of ``method`` is named in titles: its method name, or the switched-off variant's name."""
    return BASELINE_SWITCHES[method][0] if method in BASELINE_SWITCHES else BASELINES.get(method, "")


def is_switched_baseline(group: RunGroup) -> bool:
    """Whether the runs of ``group`` are its method's switched-off baseline (:data:`BASELINE_SWITCHES`)."""
    if group.method not in BASELINE_SWITCHES or not group.runs:
        return False
    config = group.runs[0].config
    for dotted, want in BASELINE_SWITCHES[group.method][1].items():
        node: object = config
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node != want:
            return False
    return True

# Headline metric keys, in display order; other numeric keys of metrics.json follow alphabetically.
HEADLINE_METRICS: tuple[str, ...] = (
    "MaxBoxAccV2", "Top-1 Loc", "GT-known Loc", "PxAP", "Top-1 Cls",
    "mIoU", "mIoU_own_best_threshold", "seed_mIoU", "pseudo_mIoU", "CorLoc",
    "J&F-Mean", "J-Mean", "F-Mean",
    "AP50_novel", "AP50_base", "AP50_all", "mAP50",
    "mAP", "mAP_source_only", "mAP_oracle", "PSNR", "SSIM",
)

# Metrics where lower is better; everything else is "higher is better" (the best is bolded accordingly).
LOWER_IS_BETTER_WORDS: tuple[str, ...] = ("loss", "decay", "error", "time", "fid")


def lower_is_better(key: str) -> bool:
    """Whether a smaller value of metric ``key`` is better (losses, decays, errors, times)."""
    low = key.lower()
    return any(word in low for word in LOWER_IS_BETTER_WORDS)


def metric_order(keys: Sequence[str]) -> list[str]:
    """``keys`` with the headline metrics first (in :data:`HEADLINE_METRICS` order), then the rest sorted."""
    known = [k for k in HEADLINE_METRICS if k in keys]
    rest = sorted(k for k in set(keys) if k not in HEADLINE_METRICS)
    return known + rest


@dataclass
class Comparison:
    """A method's run groups next to its baseline's (either side may be empty)."""

    title: str
    baseline: list[RunGroup]
    method: list[RunGroup]

    @property
    def groups(self) -> list[RunGroup]:
        """Baseline groups first, then the method's."""
        return self.baseline + self.method


def build_comparisons(groups: Sequence[RunGroup]) -> list[Comparison]:
    """Pair each method's groups with its baseline's; methods without a partner stand alone.

    A baseline shared by several methods appears in each of their comparisons; a baseline whose
    methods are absent is shown alone.
    """
    by_method: dict[str, list[RunGroup]] = {}
    for group in groups:
        by_method.setdefault(group.method, []).append(group)
    used: set[str] = set()
    out: list[Comparison] = []
    for method, mgroups in by_method.items():
        if method in BASELINE_SWITCHES:
            base_groups = [g for g in mgroups if is_switched_baseline(g)]
            own = [g for g in mgroups if not is_switched_baseline(g)]
            if base_groups:  # the baseline's runs stay baseline runs even when the method's own are absent
                out.append(Comparison(title=f"{method} vs {baseline_title(method)}", baseline=base_groups, method=own))
                used.add(method)
            continue
        base = BASELINES.get(method)
        if base is not None and base in by_method:
            out.append(Comparison(title=f"{method} vs {base}", baseline=by_method[base], method=mgroups))
            used.update({method, base})
    for method, mgroups in by_method.items():
        if method not in used:
            out.append(Comparison(title=method, baseline=[], method=mgroups))
    return out
