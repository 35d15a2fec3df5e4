"""Tiny fake detection datasets in the layouts the cross-domain configs read, written by the tests.

* :func:`write_shapes_domains`: ShapesWorld's ``domains/`` (CUT folders, COCO JSON boxes for trainA, testA, testB).
* :func:`write_cityscapes`: Cityscapes and Foggy Cityscapes as their zips unpack (``leftImg8bit/<split>/<city>/``,
  ``leftImg8bit_foggy/<split>/<city>/`` with three fog densities per image), plus the COCO files that mmdet's and
  cityscapesscripts' converters write (``annotations/instancesonly_filtered_gtFine_<split>.json``: Cityscapes label
  ids as category ids, file names ``<city>/<name>_leftImg8bit.png``).
* :func:`write_sim10k`: Sim10k as it ships (``VOC2012/JPEGImages/*.jpg``, ``VOC2012/Annotations/*.xml``; classes car,
  motorbike, person).
* :func:`write_kitti`: KITTI's object benchmark (``training/image_2/*.png``, ``training/label_2/*.txt``).

Every fake object is a filled rectangle on noise, so a detector has something to find.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# Cityscapes label ids of the 8 detection classes (cityscapesscripts helpers/labels.py), in id order
CITYSCAPES_IDS = {"person": 24, "rider": 25, "car": 26, "truck": 27, "bus": 28, "train": 31, "motorcycle": 32,
                  "bicycle": 33}
FOG_BETAS = ("0.005", "0.01", "0.02")


def _image(rng: np.random.Generator, size: tuple[int, int], boxes: list[tuple[int, int, int, int]],
           value: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 noise (or a constant ``value``) with a bright rectangle per xyxy box (exclusive ends)."""
    h, w = size
    pixels = np.full((h, w, 3), value, np.uint8) if value is not None else rng.integers(0, 120, (h, w, 3), np.uint8)
    for x0, y0, x1, y1 in boxes:
        pixels[y0:y1, x0:x1] = (230, 60 + 40 * (x0 % 3), 40)
    return pixels


def _coco(images: list[dict], boxes: list[list[tuple[str, tuple[int, int, int, int]]]],
          categories: dict[str, int]) -> dict:
    annotations = []
    for image, objects in zip(images, boxes):
        for name, (x0, y0, x1, y1) in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": categories[name],
                                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0,
                                "segmentation": []})
    return {"images": images, "annotations": annotations,
            "categories": [{"id": i, "name": n} for n, i in categories.items()]}


def write_shapes_domains(root: Path, *, n: int = 4, size: tuple[int, int] = (32, 48),
                         classes: tuple[str, ...] = ("car", "person")) -> Path:
    """ShapesWorld's ``domains/``: trainA (clear) and trainB (foggy) for the translators, labelled trainA, testA,
    testB (foggy) and testB_clean (its fog-free twins), boxes in ``annotations/<split>.json`` (category ids 1..K)."""
    rng = np.random.default_rng(0)
    (root / "annotations").mkdir(parents=True)
    categories = {name: k + 1 for k, name in enumerate(classes)}
    for split in ("trainA", "trainB", "testA", "testB"):
        (root / split).mkdir()
        if split == "testB":
            (root / "testB_clean").mkdir()
        images, objects = [], []
        for i in range(n):
            boxes = [(2 + i, 3, 14 + i, 13), (20, 8 + i % 3, 30, 26)]
            own = [(classes[(i + k) % len(classes)], b) for k, b in enumerate(boxes)]
            clean = _image(rng, size, boxes)
            name = f"{split}_{i:06d}.png"
            Image.fromarray((0.5 * clean + 100).astype(np.uint8) if split.endswith("B") else clean).save(
                root / split / name)
            if split == "testB":
                Image.fromarray(clean).save(root / "testB_clean" / name)
            images.append({"id": i + 1, "file_name": name, "width": size[1], "height": size[0]})
            objects.append(own)
        if split != "trainB":
            (root / "annotations" / f"{split}.json").write_text(json.dumps(_coco(images, objects, categories)))
    return root


def cityscapes_name(city: str, i: int) -> str:
    """``<city>_000000_0000<i>`` as Cityscapes names its frames (without the ``_leftImg8bit.png`` ending)."""
    return f"{city}_000000_{19 + i:06d}"


def write_cityscapes(root: Path, *, n: int = 2, size: tuple[int, int] = (32, 64)) -> Path:
    """Cityscapes + Foggy Cityscapes (train: aachen, val: frankfurt, ``n`` frames each) and the converted COCO files.

    The foggy images of beta 0.02 are the clean image with fog; the other two densities are constant grey images of
    another size, so that reading the wrong density is seen (and breaks a batch)."""
    rng = np.random.default_rng(1)
    (root / "annotations").mkdir(parents=True)
    for split, city in (("train", "aachen"), ("val", "frankfurt")):
        clean_dir = root / "leftImg8bit" / split / city
        foggy_dir = root / "leftImg8bit_foggy" / split / city
        clean_dir.mkdir(parents=True)
        foggy_dir.mkdir(parents=True)
        images, objects = [], []
        for i in range(n):
            stem = cityscapes_name(city, i)
            boxes = [(4 + i, 6, 20 + i, 18), (30, 4, 38, 28), (44, 10, 60, 22)]
            own = list(zip(("car", "person", "bicycle"), boxes))
            clean = _image(rng, size, boxes)
            Image.fromarray(clean).save(clean_dir / f"{stem}_leftImg8bit.png")
            for beta in FOG_BETAS:
                fog = (0.5 * clean + 100).astype(np.uint8) if beta == "0.02" else np.full((24, 40, 3), 128, np.uint8)
                Image.fromarray(fog).save(foggy_dir / f"{stem}_leftImg8bit_foggy_beta_{beta}.png")
            images.append({"id": len(images) + 1, "file_name": f"{city}/{stem}_leftImg8bit.png", "width": size[1],
                           "height": size[0], "seg_file_name": f"{city}/{stem}_gtFine_instanceIds.png"})
            objects.append(own)
        data = _coco(images, objects, CITYSCAPES_IDS)
        (root / "annotations" / f"instancesonly_filtered_gtFine_{split}.json").write_text(json.dumps(data))
    return root


def _voc_xml(file_name: str, size: tuple[int, int], objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    """A VOC annotation; boxes given as 0-based exclusive xyxy, written 1-based inclusive as VOC does."""
    parts = [f"<annotation><folder>VOC2012</folder><filename>{file_name}</filename>",
             f"<size><width>{size[1]}</width><height>{size[0]}</height><depth>3</depth></size>"]
    for name, (x0, y0, x1, y1) in objects:
        parts.append(f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
                     f"<difficult>0</difficult><bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax>"
                     f"<ymax>{y1}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>\n"


def write_sim10k(root: Path, *, n: int = 3, size: tuple[int, int] = (40, 72)) -> Path:
    """Sim10k's ``VOC2012/`` (JPEG frames named by number, one XML each with car, motorbike and person boxes)."""
    rng = np.random.default_rng(2)
    voc = root / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "Annotations").mkdir()
    for i in range(n):
        stem = str(3384645 + 17 * i)
        objects = [("car", (4 + i, 8, 24 + i, 22)), ("motorbike", (30, 6, 40, 20)), ("person", (50, 4, 58, 30))]
        Image.fromarray(_image(rng, size, [b for _, b in objects])).save(voc / "JPEGImages" / f"{stem}.jpg",
                                                                         quality=95)
        (voc / "Annotations" / f"{stem}.xml").write_text(_voc_xml(f"{stem}.jpg", size, objects))
    return root


def kitti_line(kind: str, box: tuple[float, float, float, float]) -> str:
    """One KITTI label line: type, truncation, occlusion, alpha, the 2D box, dimensions, location, rotation."""
    left, top, right, bottom = box
    return f"{kind} 0.00 0 -1.57 {left:.2f} {top:.2f} {right:.2f} {bottom:.2f} 1.52 1.63 3.88 -2.7 1.7 14.0 -1.6"


def write_kitti(root: Path, *, n: int = 3, size: tuple[int, int] = (32, 104)) -> Path:
    """KITTI's ``training/image_2`` and ``training/label_2``: Car, Pedestrian and DontCare lines per frame."""
    rng = np.random.default_rng(3)
    images, labels = root / "training" / "image_2", root / "training" / "label_2"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    for i in range(n):
        stem = f"{i:06d}"
        car, pedestrian = (6 + i, 8, 30 + i, 24), (50, 2, 58, 30)
        Image.fromarray(_image(rng, size, [car, pedestrian])).save(images / f"{stem}.png")
        lines = [kitti_line("Car", (car[0], car[1], car[2] - 1, car[3] - 1)),  # 0-based inclusive corners
                 kitti_line("Pedestrian", (pedestrian[0], pedestrian[1], pedestrian[2] - 1, pedestrian[3] - 1)),
                 "DontCare -1 -1 -10 70.00 4.00 90.00 12.00 -1 -1 -1 -1000 -1000 -1000 -10"]
        (labels / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return root


def write_coco_zero_shot(root: Path) -> Path:
    """COCO 2017 with OVR-CNN's open-vocabulary files (configs/detector/coco-rpn.yaml): ``train2017/``, ``val2017/``,
    ``zero-shot/instances_train2017_seen_2.json`` (base boxes only) and ``zero-shot/instances_val2017_all_2.json``,
    from the open-vocabulary tests' tiny fake COCO."""
    from tests.methods.open_vocab.coco_fake import write_coco

    write_coco(root)
    (root / "zero-shot").mkdir(exist_ok=True)
    for source, name in (("train", "instances_train2017_seen_2.json"), ("val", "instances_val2017_all_2.json")):
        shutil.copy(root / "annotations" / f"instances_{source}.json", root / "zero-shot" / name)
    return root


def write_real_layouts(data: Path) -> Path:
    """Every real layout the cross-domain configs name, under ``data`` (their ``data/`` prefix)."""
    write_cityscapes(data / "cityscapes")
    write_sim10k(data / "sim10k")
    write_kitti(data / "kitti")
    write_coco_zero_shot(data / "coco")
    return data


def rebase(value: Any, data: Path, domains: Path | None = None) -> Any:
    """``value`` (a config dataclass, dict or string) with the configs' ``data/...`` paths moved under ``data`` and a
    ``synth:`` root replaced by a fake ShapesWorld ``domains`` folder."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: rebase(getattr(value, f.name), data, domains)  # type: ignore[misc]
                                             for f in dataclasses.fields(value)})
    if isinstance(value, dict):
        return {k: rebase(v, data, domains) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("data/"):
        return str(data / value.removeprefix("data/"))
    if isinstance(value, str) and value.startswith("synth:") and domains is not None:
        return str(domains)
    return value
