"""ShapesWorld: a procedural, seeded benchmark written to disk in the real datasets' formats.

``generate(out, preset=..., seed=...)`` writes ``out/{wsol,voc,davis,coco,domains,pretrain}/`` and
``out/manifest.json``. Every item draws from its own ``numpy.random.default_rng([seed, task, ...])``, so
the files do not depend on the number of worker processes, and the same seed gives the same bytes.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from lowlabel.data.synth.config import PRESETS, Preset, get_preset
from lowlabel.data.synth.manifest import MANIFEST, build_manifest, folder_versions, load_manifest
from lowlabel.data.synth.parallel import default_workers
from lowlabel.errors import DataError, UserError

KINDS: tuple[str, ...] = ("wsol", "voc", "davis", "coco", "domains", "pretrain")
# The generator version of each folder: bump a folder's entry when its bytes change, and only that folder of a cached
# ShapesWorld is regenerated (lowlabel.data.ensure_synth). 1.6: coco/ enlarged (20 categories, 5 novel; 6,000 train
# and 1,000 val images at full); the other folders are 1.5's, byte for byte.
FOLDER_VERSIONS: dict[str, str] = {
    "wsol": "1.5", "voc": "1.5", "davis": "1.5", "coco": "1.6", "domains": "1.5", "pretrain": "1.5",
}  # fmt: skip
GENERATOR_VERSION = "1.6"  # the newest of FOLDER_VERSIONS


def _task_fns() -> dict[str, Callable[[Preset, Path, int, int], None]]:
    from lowlabel.data.synth.pretrain_task import generate_pretrain
    from lowlabel.data.synth.voc_task import generate_voc
    from lowlabel.data.synth.wsol_task import generate_wsol

    fns: dict[str, Callable[[Preset, Path, int, int], None]] = {
        "wsol": lambda p, o, s, w: generate_wsol(p.wsol, o, s, w),
        "voc": lambda p, o, s, w: generate_voc(p.voc, o, s, w),
        "pretrain": lambda p, o, s, w: generate_pretrain(p.pretrain, o, s, w),
    }
    try:
        from lowlabel.data.synth.coco_task import generate_coco
        from lowlabel.data.synth.davis_task import generate_davis
        from lowlabel.data.synth.domains_task import generate_domains
    except ImportError:  # pragma: no cover - partial checkouts
        return fns
    fns["davis"] = lambda p, o, s, w: generate_davis(p.davis, o, s, w)
    fns["coco"] = lambda p, o, s, w: generate_coco(p.coco, o, s, w)
    fns["domains"] = lambda p, o, s, w: generate_domains(p.domains, o, s, w)
    return fns


def generate(
    out: str | Path,
    *,
    preset: str | Preset = "quick",
    seed: int = 0,
    workers: int | None = None,
    kinds: Sequence[str] | None = None,
    overwrite: bool = False,
    verbose: bool = False,
) -> dict:
    """Generate ShapesWorld into ``out`` and return the manifest dict.

    Args:
        out: output folder (created).
        preset: ``"quick"``, ``"full"``, ``"tiny"`` or a :class:`Preset`.
        seed: base seed; the same seed gives byte-identical files.
        workers: processes (default: every core available).
        kinds: subset of ``KINDS`` to write (default: all).
        overwrite: remove existing task folders first instead of refusing.
        verbose: print one timing line per task to stderr.
    """
    out = Path(out)
    preset_name = preset if isinstance(preset, str) else "custom"
    cfg = get_preset(preset) if isinstance(preset, str) else preset
    fns = _task_fns()
    kinds = [k for k in KINDS if k in fns] if kinds is None else list(kinds)
    for kind in kinds:
        if kind not in fns:
            raise UserError(f"unknown ShapesWorld folder {kind!r}; choose from {sorted(fns)}")
    workers = default_workers() if workers is None else max(1, workers)
    for kind in kinds:
        if (out / kind).exists():
            if not overwrite:
                raise UserError(f"{out / kind}: already exists (use --overwrite or another --out)")
            shutil.rmtree(out / kind)
    versions = {}  # folders already in out keep the version their manifest records
    if (out / MANIFEST).is_file():
        with contextlib.suppress(DataError):
            versions = folder_versions(load_manifest(out))
    versions.update({kind: FOLDER_VERSIONS[kind] for kind in kinds})
    (out / MANIFEST).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        t0 = time.perf_counter()
        fns[kind](cfg, out / kind, seed, workers)
        if verbose:
            print(f"shapesworld: {kind} written in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return build_manifest(out, version=GENERATOR_VERSION, preset=preset_name, seed=seed, versions=versions)


__all__ = ["FOLDER_VERSIONS", "GENERATOR_VERSION", "KINDS", "PRESETS", "generate"]
