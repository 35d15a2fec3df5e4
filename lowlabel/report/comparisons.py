"""Which method is compared with which baseline, and which metrics are the headline ones.

This is the one place that knows method names in the report: adding a method with a baseline is
one line in :data:`BASELINES`, and its headline metric keys go in :data:`HEADLINE_METRICS`. A baseline that is the
method itself with a part switched off (ContrastCorr's intra-only training) is also a line of
:data:`BASELINE_SWITCHES`: the config values that make a run of the method a baseline run. A baseline that is the
same stage started from another earlier stage (RegionCLIP's detection transfer from the CLIP teacher instead of the
student) is a line of :data:`BASELINE_INITS`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lowlabel.report.runs import Run, RunGroup

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

# method -> (the baseline's name, the method of the run its ``init_from`` names) where the baseline is the method
# started from another earlier stage; `lowlabel demo` trains it from that method's run.
BASELINE_INITS: dict[str, tuple[str, str]] = {
    "ovd": ("teacher-init", "clip"),
}


def baseline_title(method: str) -> str:
    """How the baseline of ``method`` is named in titles: its method name, or the switched-off variant's name."""
    if method in BASELINE_SWITCHES:
        return BASELINE_SWITCHES[method][0]
    return BASELINE_INITS[method][0] if method in BASELINE_INITS else BASELINES.get(method, "")


def is_switched_baseline(group: RunGroup) -> bool:
    """Whether the runs of ``group`` are its method's switched-off baseline (:data:`BASELINE_SWITCHES`) or its
    baseline started from another stage (:data:`BASELINE_INITS`)."""
    if group.method in BASELINE_INITS and group.runs:
        return init_method(group.runs[0]) == BASELINE_INITS[group.method][1]
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


def init_method(run: Run) -> str:
    """The method of the run that ``run``'s config ``init_from`` names ("" when none, or when it cannot be read). A
    relative path is read as written, else from the folder the run was trained in (its env.json ``cwd``)."""
    init = run.config.get("init_from")
    if not isinstance(init, str) or not init:
        return ""
    path = Path(init)
    if not path.is_absolute() and not path.exists():
        try:
            cwd = json.loads(run.env_text or "{}").get("cwd")
        except (json.JSONDecodeError, AttributeError):
            cwd = None
        path = Path(cwd) / path if isinstance(cwd, str) else path
    for folder in (path, path.parent, path.parent.parent):  # a run folder, or a checkpoint in <run>/checkpoints/
        env = folder / "env.json"
        if env.is_file():
            try:
                method = json.loads(env.read_text()).get("method")
            except (OSError, json.JSONDecodeError, AttributeError):
                return ""
            return method if isinstance(method, str) else ""
    return ""


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
        if method in BASELINE_SWITCHES or method in BASELINE_INITS:
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
