"""Readers for the official prediction and annotation file formats scored by ``lowlabel score``.

Every reader raises :class:`~lowlabel.errors.UserError` with one line that names the file (and the line) at fault.
Evaluators stay I/O-free; this module is the only place in ``lowlabel.metrics`` that touches files. The
wsolevaluation metadata reader is shared with the datasets: :func:`lowlabel.data.wsol.read_wsol_metadata`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lowlabel.errors import UserError
from lowlabel.structures import VOC_CLASSES


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty stripped lines with their 1-based numbers."""
    if not path.is_file():
        raise UserError(f"missing file: {path}")
    text = path.read_text(encoding="utf-8")
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_class_csv(path: str | Path) -> dict[str, int]:
    """``image_id,class`` lines (the predictions CSV of ``score wsol``)."""
    out: dict[str, int] = {}
    p = Path(path)
    for no, line in _lines(p):
        parts = [s.strip() for s in line.split(",")]
        if len(parts) != 2:
            raise UserError(f"{p}:{no}: expected 'image_id,class', got {line!r}")
        try:
            out[parts[0]] = int(parts[1])
        except ValueError:
            raise UserError(f"{p}:{no}: class must be an integer, got {parts[1]!r}") from None
    return out


def scoremap_path(scoremaps: str | Path, image_id: str) -> Path:
    """``<scoremaps>/<image_id>.npy`` as wsolevaluation saves it (falls back to the id without its extension)."""
    root = Path(scoremaps)
    path = root / f"{image_id}.npy"
    if not path.is_file():
        alt = root / str(Path(image_id).with_suffix(".npy"))
        if alt.is_file():
            return alt
        raise UserError(f"missing score map for image {image_id!r}: {path}")
    return path


def read_mask_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Grayscale mask as float32 resized to ``size`` (W, H), nearest neighbour (wsolevaluation ``load_mask_image``)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise UserError(f"cannot read mask image: {path}")
    return cv2.resize(img.astype(np.float32), size, interpolation=cv2.INTER_NEAREST)


def read_label_png(path: str | Path) -> np.ndarray:
    """An 8-bit class-index PNG (palette or grayscale) as uint8 ``(H, W)``; RGB or 16-bit files are refused."""
    from PIL import Image

    p = Path(path)
    if not p.is_file():
        raise UserError(f"missing file: {p}")
    try:
        with Image.open(p) as img:
            if img.mode not in ("P", "L"):
                raise UserError(
                    f"{p}: expected an 8-bit palette or grayscale PNG of class indices, got mode {img.mode}"
                )
            return np.array(img, dtype=np.uint8)
    except OSError as err:
        raise UserError(f"{p}: cannot read image ({err})") from None


def read_json(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"missing file: {p}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{p}:{err.lineno}: invalid JSON ({err.msg})") from None


def read_det_txt(path: str | Path, known_images: set[str]) -> list[tuple[str, float, list[float]]]:
    """VOC devkit / PCL detection lines ``<image> <score> <x0> <y0> <x1> <y1>`` (1-based inclusive pixels)."""
    p = Path(path)
    out = []
    for no, line in _lines(p):
        parts = line.split()
        if len(parts) != 6:
            raise UserError(f"{p}:{no}: expected '<image> <score> <x0> <y0> <x1> <y1>', got {line!r}")
        try:
            score, *box = (float(v) for v in parts[1:])
        except ValueError:
            raise UserError(f"{p}:{no}: non-numeric value in {line!r}") from None
        if parts[0] not in known_images:
            raise UserError(f"{p}:{no}: image {parts[0]!r} is not in the image set")
        if box[2] < box[0] or box[3] < box[1]:
            raise UserError(f"{p}:{no}: box has x1 < x0 or y1 < y0: {line!r}")
        out.append((parts[0], score, box))
    return out


def read_voc_set(voc_root: str | Path, image_set: str) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """Image ids of ``ImageSets/Main/<set>.txt`` and the objects of their ``Annotations/<id>.xml``."""
    from lowlabel.metrics.voc_ap import read_voc_objects

    root = Path(voc_root)
    set_file = root / "ImageSets" / "Main" / f"{image_set}.txt"
    ids = [line.split()[0] for _, line in _lines(set_file)]
    objects = {}
    for image_id in ids:
        xml = root / "Annotations" / f"{image_id}.xml"
        if not xml.is_file():
            raise UserError(f"missing annotation for image {image_id!r} of {set_file}: {xml}")
        try:
            objects[image_id] = read_voc_objects(xml)
        except ValueError as err:
            raise UserError(str(err)) from None
    return ids, objects


def class_order(names: set[str]) -> list[str]:
    """VOC order when every name is a VOC class, else sorted."""
    return [c for c in VOC_CLASSES if c in names] if names <= set(VOC_CLASSES) else sorted(names)


def davis_frames(davis_root: str | Path, image_set: str, resolution: str = "480p") -> dict[str, list[Path]]:
    """Sequence name -> sorted GT annotation PNGs, from ``ImageSets/2017/<set>.txt``."""
    root = Path(davis_root)
    set_file = root / "ImageSets" / "2017" / f"{image_set}.txt"
    out = {}
    for _, seq in _lines(set_file):
        folder = root / "Annotations" / resolution / seq
        frames = sorted(folder.glob("*.png"))
        if not frames:
            raise UserError(f"no annotation PNGs for sequence {seq!r} in {folder}")
        out[seq] = frames
    return out


def davis_result_paths(results: str | Path, seq: str, gt_frames: list[Path]) -> list[Path]:
    """Result PNGs ``<results>/<seq>/<frame>.png`` for the scored frames (all but the first and last)."""
    folder = Path(results) / seq
    paths = [folder / f.name for f in gt_frames[1:-1]]
    missing = [p.stem for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:10]) + (f" (and {len(missing) - 10} more)" if len(missing) > 10 else "")
        raise UserError(f"result folder {folder} lacks {len(missing)} frame(s): {shown}")
    return paths
