"""``lowlabel data synth|check|preview``: generate ShapesWorld, validate a dataset layout, draw a sample grid."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any


def add_parser(subcommands: Any) -> None:
    """Register the ``data`` command group."""
    from jsonargparse import ArgumentParser

    from lowlabel.data.check import FORMATS

    parser = ArgumentParser(description="Datasets: generate ShapesWorld, check a real dataset layout, preview samples.")
    subcommands.add_subcommand("data", parser, help="generate ShapesWorld, check or preview datasets")
    sub = parser.add_subcommands(dest="action")

    synth = ArgumentParser(
        description="Generate the ShapesWorld benchmark in the real datasets' formats "
        "(wsol/ voc/ davis/ coco/ domains/ pretrain/ + manifest.json)."
    )
    synth.add_argument("--out", type=str, required=True, help="output folder")
    synth.add_argument("--preset", type=str, default="quick", help="quick (seconds) | full (minutes) | tiny (tests)")
    synth.add_argument("--seed", type=int, default=0, help="the same seed gives byte-identical files")
    synth.add_argument("--workers", type=int, default=0, help="processes (0 = every core)")
    synth.add_argument("--only", type=str, nargs="*", default=None,
                       help="subset of wsol voc davis coco domains pretrain")
    synth.add_argument("--overwrite", type=bool, default=False, help="replace existing task folders")
    sub.add_subcommand("synth", synth, help="generate ShapesWorld")

    check = ArgumentParser(
        description="Validate a dataset layout: print counts and classes, name every missing, "
        "corrupt or mismatched file; exit status 1 when there are problems."
    )
    check.add_argument("format", type=str, help=f"one of {', '.join(FORMATS)}")
    check.add_argument("root", type=str, help="dataset root (a ShapesWorld folder or a real dataset)")
    check.add_argument("--fast", type=bool, default=False, help="only check that files exist (no decoding)")
    check.add_argument("--manifest", type=bool, default=False, help="also verify every sha256 of a ShapesWorld root")
    sub.add_subcommand("check", check, help="validate a dataset layout")

    prev = ArgumentParser(description="Draw a labelled grid of samples (boxes, masks, captions).")
    prev.add_argument("root", type=str, help="dataset root, or a ShapesWorld output folder (all five kinds)")
    prev.add_argument("--out", type=str, default="preview.png", help="output PNG")
    prev.add_argument("--format", type=str, default=None, help="dataset format (guessed from the layout)")
    prev.add_argument("--num", type=int, default=16, help="number of samples")
    sub.add_subcommand("preview", prev, help="draw a sample grid")


def run(cfg: Any) -> int:
    action = cfg.action
    return {"synth": _synth, "check": _check, "preview": _preview}[action](cfg[action])


def _synth(cfg: Any) -> int:
    from lowlabel.data.synth import generate

    t0 = time.perf_counter()
    manifest = generate(
        Path(cfg.out),
        preset=cfg.preset,
        seed=cfg.seed,
        workers=cfg.workers or None,
        kinds=cfg.only or None,
        overwrite=cfg.overwrite,
        verbose=True,
    )
    print(
        f"ShapesWorld {cfg.preset} (seed {cfg.seed}): {manifest['num_files']} files in "
        f"{time.perf_counter() - t0:.1f} s -> {cfg.out} (digest {manifest['digest'][:16]})"
    )
    return 0


def _check(cfg: Any) -> int:
    from lowlabel.data.check import check
    from lowlabel.data.synth.manifest import verify_manifest

    root = Path(cfg.root)
    folder = {"video": "davis/clips", "imagenet": "pretrain"}.get(cfg.format, cfg.format)  # in a ShapesWorld root
    fmt_root = root / folder if (root / "manifest.json").is_file() and (root / folder).is_dir() else root
    report = check(cfg.format, fmt_root, fast=cfg.fast)
    if cfg.manifest:
        report.problems += verify_manifest(root if (root / "manifest.json").is_file() else fmt_root.parent, full=True)
    for line in report.lines():
        print(line, file=sys.stdout if not line.startswith("problem") else sys.stdout)
    return 0 if report.ok else 1


def _preview(cfg: Any) -> int:
    from lowlabel.data.preview import preview

    out = preview(Path(cfg.root), Path(cfg.out), n=cfg.num, fmt=cfg.format)
    print(out)
    return 0
