"""Tiny datasets in the real wsolevaluation layouts (CUB, ILSVRC, OpenImages), written by the WSOL tests.

Each image is a grey background with one coloured square (class = colour); boxes and masks are exact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = ((220, 30, 30), (30, 200, 30), (30, 30, 220))


def _image(label: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    img = np.full((size, size, 3), 120, np.uint8)
    side = int(rng.integers(size // 4, size // 2))
    x0, y0 = (int(v) for v in rng.integers(0, size - side, 2))
    img[y0:y0 + side, x0:x0 + side] = COLOURS[label % len(COLOURS)]
    return img, [x0, y0, x0 + side - 1, y0 + side - 1]


def image_id(layout: str, split: str, label: int, k: int) -> str:
    """Image ids shaped as in the real metadata."""
    if layout == "CUB":
        return f"{label + 1:03d}.Bird_{label}/Bird_{label}_{split}_{k:04d}.jpg"
    if layout == "ILSVRC":
        return f"train/n0000000{label}/n0000000{label}_{k}.JPEG" if split == "train" else \
            f"val/ILSVRC2012_{split}_{label:02d}{k:04d}.JPEG"
    return f"{split}/cls{label}/{split}_{label}_{k}.jpg"  # OpenImages: <split>/<class>/<id>.jpg


def write_wsol(base: Path, layout: str, *, num_classes: int = 3, per_class: int = 2, size: int = 48,
               seed: int = 0, mask_splits: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """Write ``base/dataset/<layout>/...`` images and ``base/metadata/<layout>/<split>/`` files.

    Args:
        layout: ``CUB`` / ``ILSVRC`` (box localization) or ``OpenImages`` (mask localization on val/test).
        mask_splits: for box layouts, also write ``metadata/<layout>Mask/<split>`` with masks.

    Returns:
        ``(data_root, metadata_root)``.
    """
    rng = np.random.default_rng(seed)
    data_root, meta_root = base / "dataset" / layout, base / "metadata" / layout
    masks_in_main = layout == "OpenImages"
    for split in ("train", "val", "test"):
        lines: dict[str, list[str]] = {"image_ids": [], "class_labels": [], "image_sizes": [], "localization": []}
        mask_lines: list[str] = []
        for label in range(num_classes):
            for k in range(per_class):
                iid = image_id(layout, split, label, k)
                img, box = _image(label, size, rng)
                (data_root / iid).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(data_root / iid)
                lines["image_ids"].append(iid)
                lines["class_labels"].append(f"{iid},{label}")
                lines["image_sizes"].append(f"{iid},{size},{size}")
                if split != "train" and (masks_in_main or split in mask_splits):
                    mask = np.zeros((size, size), np.uint8)
                    mask[box[1]:box[3] + 1, box[0]:box[2] + 1] = 255
                    rel = str(Path(iid).with_suffix("")) + "_mask.png"
                    (data_root / rel).parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(mask).save(data_root / rel)
                    mask_lines.append(f"{iid},{rel},")
                if not masks_in_main:
                    lines["localization"].append(f"{iid},{box[0]},{box[1]},{box[2]},{box[3]}")
        if masks_in_main:
            lines["localization"] = mask_lines
        _write(meta_root / split, lines)
        if mask_lines and not masks_in_main:
            _write(Path(f"{meta_root}Mask") / split, {**lines, "localization": mask_lines})
    (meta_root / "class_names.txt").write_text("".join(f"class{c}\n" for c in range(num_classes)))
    return data_root, meta_root


def _write(folder: Path, lines: dict[str, list[str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in lines.items():
        if rows or name != "localization":
            (folder / f"{name}.txt").write_text("".join(r + "\n" for r in rows))
