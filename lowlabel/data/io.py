"""Reading images, masks, text and markup files with one-line :class:`DataError` messages naming the file."""

from __future__ import annotations

import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors

from lowlabel.errors import DataError
from lowlabel.structures import voc_palette

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_PALETTE = voc_palette()


def load_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; a missing, truncated or unreadable file raises :class:`DataError`."""
    if not path.is_file():
        raise DataError(f"{path}: image file not found")
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: corrupt or truncated image ({e})") from None


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex (manifests, the weight files a run records)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def list_images(path: Path, *, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """``path`` itself if it is a file, else the image files under it (recursively, sorted).

    Raises:
        DataError: ``path`` does not exist, or a folder holds no file with one of ``suffixes``.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"{path}: no such image file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
    if not files:
        raise DataError(f"{path}: no images ({', '.join(suffixes)})")
    return files


def save_rgb(path: Path, rgb: np.ndarray) -> None:
    """(H, W, 3) uint8 -> PNG (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB").save(path, format="PNG")


def save_palette_png(path: Path, index: np.ndarray) -> None:
    """(H, W) uint8 class/object indices -> PNG in mode ``P`` with the VOC colour map (VOC, DAVIS, SIPE/IRN)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.asarray(index).astype(np.uint8), mode="P")
    im.putpalette(_PALETTE)
    im.save(path, format="PNG")


def load_index_png(path: Path) -> np.ndarray:
    """(H, W) uint8 index image (palette or grayscale PNG), without applying the palette."""
    if not path.is_file():
        raise DataError(f"{path}: mask file not found")
    try:
        with Image.open(path) as im:
            if im.mode not in ("P", "L", "1"):
                raise DataError(f"{path}: expected a palette or grayscale PNG, got mode {im.mode}")
            return np.asarray(im, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: corrupt or truncated mask ({e})") from None


def to_image(arr: np.ndarray) -> tv_tensors.Image:
    """(H, W, 3) uint8 -> ``tv_tensors.Image`` (3, H, W) uint8."""
    return tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1))


def to_boxes(boxes: np.ndarray | list, hw: tuple[int, int]) -> tv_tensors.BoundingBoxes:
    """(N, 4) xyxy -> ``BoundingBoxes`` (float32, XYXY, canvas ``(H, W)``)."""
    t = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    return tv_tensors.BoundingBoxes(t, format="XYXY", canvas_size=hw)


def numbered_lines(path: Path) -> list[tuple[int, str]]:
    """Non-empty stripped lines of a UTF-8 text file with their 1-based line numbers (for messages)."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e})") from None
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def read_lines(path: Path) -> list[str]:
    """Non-empty, stripped lines of a text file."""
    return [line for _, line in numbered_lines(path)]


def read_json(path: Path) -> object:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: malformed JSON ({e})") from None


def read_xml(path: Path) -> ET.Element:
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found")
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path}: malformed XML ({e})") from None


def parse_voc_objects(path: Path, class_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    """Objects of a VOC XML: boxes (N, 4) 0-based inclusive xyxy, labels (N,), difficult (N,) bool, (H, W)."""
    root = read_xml(path)
    index = {n: i for i, n in enumerate(class_names)}
    boxes, labels, difficult = [], [], []
    try:
        size = root.find("size")
        hw = (int(size.findtext("height")), int(size.findtext("width"))) if size is not None else (0, 0)
        for obj in root.iter("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in index:
                raise DataError(f"{path}: unknown class {name!r} (known: {', '.join(class_names)})")
            bb = obj.find("bndbox")
            box = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            boxes.append([v - 1.0 for v in box])  # VOC 1-based inclusive -> 0-based inclusive
            labels.append(index[name])
            difficult.append((obj.findtext("difficult") or "0").strip() == "1")
    except (AttributeError, TypeError, ValueError) as e:
        raise DataError(f"{path}: malformed VOC annotation ({e})") from None
    return (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64), np.asarray(difficult, bool), hw)
