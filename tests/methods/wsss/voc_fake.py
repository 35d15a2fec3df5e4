"""A tiny dataset in the real PASCAL VOC 2012 layout, written by the WSSS tests (sipe, mlcam, seg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lowlabel.structures import voc_palette

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def _xml(image_id: str, w: int, h: int, objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{b[0] + 1}</xmin><ymin>{b[1] + 1}</ymin><xmax>{b[2] + 1}</xmax><ymax>{b[3] + 1}</ymax>"
        f"</bndbox></object>"
        for n, b in objects
    )
    return (f"<annotation><folder>VOC2012</folder><filename>{image_id}.jpg</filename><size><width>{w}</width>"
            f"<height>{h}</height><depth>3</depth></size><segmented>1</segmented>{objs}</annotation>")


def write_fake_voc(root: Path, *, num_train: int = 4, num_val: int = 3, size: tuple[int, int] = (40, 48),
                   num_aug: int = 2, empty_id: str | None = None, seed: int = 0) -> Path:
    """Write ``root/{JPEGImages,SegmentationClass,Annotations,ImageSets/Segmentation}``; returns ``root``.

    Each image holds one or two coloured rectangles of classes 0..2 on a grey background. ``train_aug`` adds
    ``num_aug`` ids without a SegmentationClass PNG (like SBD). ``empty_id`` names an id written with no object.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    palette = voc_palette()
    splits: dict[str, list[str]] = {"train": [], "val": [], "aug": []}
    for split, count in (("train", num_train), ("val", num_val), ("aug", num_aug)):
        for i in range(count):
            image_id = f"2007_{split}{i:03d}"
            splits[split].append(image_id)
            img = np.full((h, w, 3), 110, np.uint8) + rng.integers(0, 20, (h, w, 3)).astype(np.uint8)
            mask = np.zeros((h, w), np.uint8)
            objects = []
            n_obj = 0 if image_id == empty_id else 1 + i % 2
            for k in range(n_obj):
                c = (i + k) % 3
                y0, x0 = int(rng.integers(0, h // 2)), int(rng.integers(0, w // 2))
                y1, x1 = y0 + h // 3, x0 + w // 3
                img[y0:y1, x0:x1] = (np.array([230, 40, 40]) if c == 0 else np.array([40, 200, 40]) if c == 1
                                     else np.array([40, 40, 230])).astype(np.uint8)
                mask[y0:y1, x0:x1] = c + 1
                objects.append((VOC_CLASSES[c], (x0, y0, x1 - 1, y1 - 1)))
            (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
            (root / "Annotations").mkdir(parents=True, exist_ok=True)
            (root / "Annotations" / f"{image_id}.xml").write_text(_xml(image_id, w, h, objects))
            if split != "aug":
                png = Image.fromarray(mask, mode="P")
                png.putpalette(palette)
                (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
                png.save(root / "SegmentationClass" / f"{image_id}.png")
    seg = root / "ImageSets" / "Segmentation"
    seg.mkdir(parents=True, exist_ok=True)
    (seg / "train.txt").write_text("".join(i + "\n" for i in splits["train"]))
    (seg / "val.txt").write_text("".join(i + "\n" for i in splits["val"]))
    (seg / "train_aug.txt").write_text("".join(i + "\n" for i in splits["train"] + splits["aug"]))
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    (main / "train.txt").write_text("".join(i + "\n" for i in splits["train"] + splits["aug"]))
    (main / "val.txt").write_text("".join(i + "\n" for i in splits["val"]))
    return root
