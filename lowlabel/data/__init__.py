"""Dataset readers for the real formats (wsolevaluation, VOC, DAVIS, COCO, domain folders) and ShapesWorld.

:func:`resolve_root` turns a config's data root into a folder: a real path is returned as is, and
``synth:<preset>[:<seed>]`` generates ShapesWorld on first use into a cache folder, the way
torchvision's ``download=True`` fetches a dataset, and checks it against its manifest afterwards.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from lowlabel.errors import DataError, UserError

KINDS = ("wsol", "voc", "davis", "coco", "domains", "pretrain")
ON_DEMAND = ("pretrain",)  # added to a cached ShapesWorld folder the first time a run asks for it
_READ_VERSIONS: dict[str, str] = {}  # kind -> generator version of each ShapesWorld folder this process resolved


def shapesworld_versions() -> dict[str, str]:
    """``{kind: generator version}`` of the ShapesWorld folders :func:`resolve_root` has returned in this process
    (recorded in a run's ``env.json``, so a later stage can tell that its init run read another version)."""
    return dict(_READ_VERSIONS)


def _note_version(folder: Path, kind: str) -> None:
    from lowlabel.data.synth.manifest import folder_versions, load_manifest

    try:
        version = folder_versions(load_manifest(folder)).get(kind)
    except DataError:
        return
    if version:
        _READ_VERSIONS[kind] = version


def cache_dir() -> Path:
    """``$LOWLABEL_CACHE`` or ``~/.cache/lowlabel``."""
    return Path(os.environ.get("LOWLABEL_CACHE", "~/.cache/lowlabel")).expanduser()


def parse_synth(root: str) -> tuple[str, int]:
    """``"synth:quick"`` -> ``("quick", 0)``; ``"synth:full:1"`` -> ``("full", 1)``."""
    parts = root.split(":")
    if len(parts) not in (2, 3) or parts[0] != "synth" or not parts[1]:
        raise UserError(f"data root {root!r}: expected synth:<preset> or synth:<preset>:<seed>")
    try:
        seed = int(parts[2]) if len(parts) == 3 else 0
    except ValueError:
        raise UserError(f"data root {root!r}: seed {parts[2]!r} is not an integer") from None
    return parts[1], seed


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _manifest_ok(folder: Path) -> bool:
    from lowlabel.data.synth.manifest import load_manifest

    if not (folder / "manifest.json").is_file():
        return False
    try:
        return isinstance(load_manifest(folder).get("files"), dict)
    except DataError:
        return False


def _cache_ok(folder: Path, kind: str) -> bool:
    """``folder`` is a ShapesWorld output whose manifest lists ``kind`` at its current generator version
    (``FOLDER_VERSIONS``) and whose ``kind`` files match the manifest."""
    from lowlabel.data.synth import FOLDER_VERSIONS
    from lowlabel.data.synth.manifest import folder_versions, load_manifest, verify_manifest

    if not _manifest_ok(folder):
        return False
    try:
        if folder_versions(load_manifest(folder)).get(kind) != FOLDER_VERSIONS[kind]:
            return False
        return not verify_manifest(folder, kind=kind)
    except DataError:
        return False


def _replace_folder(folder: Path, tmp: Path, kind: str, preset: str, seed: int) -> None:
    """Generate ``kind`` alone (in ``tmp``) and put it in place of ``folder / kind``; the manifest's other entries
    and the other folders stay as they are."""
    from lowlabel.data.synth import FOLDER_VERSIONS, GENERATOR_VERSION, generate
    from lowlabel.data.synth.manifest import replace_folder_entries

    what = "regenerating" if (folder / kind).exists() else "adding"
    print(f"lowlabel: {what} ShapesWorld {kind}/ ({preset}, seed {seed}, generator {FOLDER_VERSIONS[kind]}) in "
          f"{folder} ...", file=sys.stderr)
    generate(tmp, preset=preset, seed=seed, kinds=[kind])
    stale = folder.parent / f".{folder.name}.{kind}.stale-{os.getpid()}"
    if (folder / kind).exists():
        os.rename(folder / kind, stale)  # readers see the old folder or the new one, never half of one
    os.rename(tmp / kind, folder / kind)
    shutil.rmtree(stale, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    replace_folder_entries(folder, kind, kind_version=FOLDER_VERSIONS[kind], version=GENERATOR_VERSION)


def ensure_synth(preset: str, seed: int, kind: str | None = None) -> Path:
    """The cached ShapesWorld folder of ``preset``/``seed``, with a current ``kind`` folder (default ``wsol``).

    A missing folder is generated with every kind except the on-demand ones (``pretrain``). In an existing folder,
    a ``kind`` that is absent (an on-demand one), stale (its generator version changed) or damaged is generated
    alone and put in place; the other folders and their manifest entries are left as they are.
    """
    from lowlabel.data.synth import generate
    from lowlabel.data.synth.config import get_preset

    get_preset(preset)  # validates the name
    base = cache_dir() / "shapesworld"
    folder = base / f"{preset}-seed{seed}"
    check_kind = kind or "wsol"
    if _cache_ok(folder, check_kind):
        return folder
    with _locked(base / f".{preset}-seed{seed}.lock"):
        if _cache_ok(folder, check_kind):  # another process made it while we waited
            return folder
        tmp = base / f".{folder.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        if _manifest_ok(folder):
            _replace_folder(folder, tmp, check_kind, preset, seed)
            return folder
        kinds = [k for k in KINDS if k not in ON_DEMAND or k == check_kind]
        print(f"lowlabel: generating ShapesWorld {preset} (seed {seed}) into {folder} ...", file=sys.stderr)
        generate(tmp, preset=preset, seed=seed, kinds=kinds)
        if folder.exists():
            stale = base / f".{folder.name}.stale-{os.getpid()}"
            os.rename(folder, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.rename(tmp, folder)  # atomic on one filesystem: readers see all or nothing
    return folder


def resolve_root(root: str | os.PathLike, kind: str) -> Path:
    """Turn a config's data root into the folder of dataset ``kind``.

    Args:
        root: a real path, or ``synth:<preset>`` / ``synth:<preset>:<seed>`` (ShapesWorld, cached).
        kind: one of ``wsol``, ``voc``, ``davis``, ``coco``, ``domains``, ``pretrain``.

    Returns:
        ``<cache>/shapesworld/<preset>-seed<seed>/<kind>`` for ShapesWorld. For a path: the path itself,
        or ``<path>/<kind>`` when the path is a ShapesWorld output folder (it has ``manifest.json``).
    """
    if kind not in KINDS:
        raise UserError(f"unknown data kind {kind!r}; choose from {list(KINDS)}")
    text = os.fspath(root)
    if text.startswith("synth:"):
        preset, seed = parse_synth(text)
        folder = ensure_synth(preset, seed, kind)
        _note_version(folder, kind)
        return folder / kind
    path = Path(text).expanduser()
    if not path.exists():
        raise DataError(f"{path}: data root does not exist")
    if (path / "manifest.json").is_file() and (path / kind).is_dir():
        _note_version(path, kind)
        return path / kind
    if path.name == kind and (path.parent / "manifest.json").is_file():  # a ShapesWorld kind folder itself
        _note_version(path.parent, kind)
    return path


__all__ = ["KINDS", "ON_DEMAND", "cache_dir", "ensure_synth", "parse_synth", "resolve_root",
           "shapesworld_versions"]
