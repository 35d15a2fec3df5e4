"""The ShapesWorld manifest: sha256 and size of every generated file, generator version and seed."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from lowlabel.data.io import file_sha256
from lowlabel.errors import DataError

MANIFEST = "manifest.json"


def build_manifest(root: Path, *, version: str, preset: str, seed: int) -> dict:
    """Hash every file under ``root`` (sorted paths) and write ``root/manifest.json``."""
    files = {}
    for p in sorted(q for q in root.rglob("*") if q.is_file() and q.name != MANIFEST):
        rel = p.relative_to(root).as_posix()
        files[rel] = {"sha256": file_sha256(p), "size": p.stat().st_size}
    digest = hashlib.sha256("".join(f"{k}:{v['sha256']}\n" for k, v in files.items()).encode()).hexdigest()
    manifest = {
        "generator": "shapesworld",
        "version": version,
        "preset": preset,
        "seed": seed,
        "num_files": len(files),
        "digest": digest,
        "files": files,
    }
    tmp = root / f".{MANIFEST}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, root / MANIFEST)  # readers never see half a manifest
    return manifest


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
