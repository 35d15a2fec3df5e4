"""The ShapesWorld manifest: sha256 and size of every generated file, generator versions and seed.

``version`` is the generator's (the newest of its folders'); ``versions`` names the generator version of each folder
(``wsol``, ``coco``, ...), so that a folder whose generator changed is regenerated alone. Manifests written before
per-folder versions (generator 1.5 and older) have only ``version``, which then holds for every folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath

from lowlabel.data.io import file_sha256
from lowlabel.errors import DataError

MANIFEST = "manifest.json"


def _hash_files(root: Path, under: str = "") -> dict[str, dict]:
    """``{relative path: {"sha256", "size"}}`` of every file under ``root / under`` (sorted paths)."""
    files = {}
    for p in sorted(q for q in (root / under).rglob("*") if q.is_file() and q.name != MANIFEST):
        rel = p.relative_to(root).as_posix()
        files[rel] = {"sha256": file_sha256(p), "size": p.stat().st_size}
    return files


def _path_order(files: dict[str, dict]) -> list[str]:
    return sorted(files, key=PurePosixPath)  # the order of sorted Paths (by parts), as rglob's files are hashed


def files_digest(files: dict[str, dict], kind: str | None = None) -> str:
    """sha256 over the ``path:sha256`` lines of ``files`` in path order (of folder ``kind``'s files when given)."""
    keep = [k for k in _path_order(files) if kind is None or k.startswith(kind + "/")]
    return hashlib.sha256("".join(f"{k}:{files[k]['sha256']}\n" for k in keep).encode()).hexdigest()


def _write(root: Path, manifest: dict) -> dict:
    tmp = root / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, root / MANIFEST)  # readers never see half a manifest
    return manifest


def _folders(files: dict[str, dict]) -> set[str]:
    return {rel.split("/", 1)[0] for rel in files if "/" in rel}


def build_manifest(root: Path, *, version: str, preset: str, seed: int, versions: dict[str, str]) -> dict:
    """Hash every file under ``root`` and write ``root/manifest.json``; ``versions`` maps each folder to the
    generator version that wrote it (entries for folders not on disk are dropped)."""
    files = _hash_files(root)
    folders = _folders(files)
    manifest = {
        "generator": "shapesworld",
        "version": version,
        "versions": {k: v for k, v in sorted(versions.items()) if k in folders},
        "preset": preset,
        "seed": seed,
        "num_files": len(files),
        "digest": files_digest(files),
        "files": files,
    }
    return _write(root, manifest)


def replace_folder_entries(root: Path, kind: str, *, kind_version: str, version: str) -> dict:
    """Re-hash folder ``kind`` of an existing ShapesWorld output and record it at ``kind_version``; every other
    folder keeps its manifest entries and version (its files are not read again)."""
    old = load_manifest(root)
    files = {rel: info for rel, info in old["files"].items() if not rel.startswith(kind + "/")}
    files.update(_hash_files(root, kind))
    versions = {**folder_versions(old), kind: kind_version}
    manifest = {**old, "version": version, "num_files": len(files), "digest": files_digest(files),
                "versions": {k: versions[k] for k in sorted(_folders(files)) if k in versions},
                "files": {k: files[k] for k in _path_order(files)}}
    return _write(root, manifest)


def folder_versions(manifest: dict) -> dict[str, str]:
    """The generator version of each folder a manifest lists: its ``versions``, or for a manifest from before
    per-folder versions, its one ``version`` for every folder."""
    folders = _folders(manifest.get("files", {}))
    recorded = manifest.get("versions")
    if isinstance(recorded, dict):
        return {k: str(recorded[k]) for k in folders if k in recorded}
    return {k: str(manifest.get("version", "")) for k in folders}


def load_manifest(root: Path) -> dict:
    path = root / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: ShapesWorld manifest missing (delete the folder to regenerate it)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed manifest ({e})") from e


def verify_manifest(root: Path, *, full: bool = False, kind: str | None = None) -> list[str]:
    """Problems found in ``root`` against its manifest (empty list = fine).

    The cheap check compares presence and size of every file (of the folder ``kind`` when given);
    ``full=True`` also recomputes every sha256.
    """
    manifest = load_manifest(root)
    problems = []
    for rel, info in manifest["files"].items():
        if kind is not None and not rel.startswith(kind + "/"):
            continue
        p = root / rel
        if not p.is_file():
            problems.append(f"{p}: missing")
        elif p.stat().st_size != info["size"]:
            problems.append(f"{p}: size {p.stat().st_size} != {info['size']} in manifest")
        elif full and file_sha256(p) != info["sha256"]:
            problems.append(f"{p}: sha256 differs from manifest")
    return problems
