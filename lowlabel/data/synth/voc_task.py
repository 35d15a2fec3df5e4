"""``voc/``: ShapesWorld in the PASCAL VOC 2012 layout (several objects per image).

::

    voc/JPEGImages/<id>.jpg
    voc/SegmentationClass/<id>.png          palette PNG, 0 = background, 1..K classes, 255 boundary band
    voc/SegmentationObject/<id>.png         palette PNG of instance indices 1..N, 255 band
    voc/Annotations/<id>.xml                VOC XML boxes (1-based inclusive corners)
    voc/ImageSets/Segmentation/{train,val,trainval,train_aug}.txt
    voc/ImageSets/Main/{train,val,trainval}.txt and <class>_{train,val,trainval}.txt
    voc/diagnostics/<id>_marking.png        union of visible markings (0/255), train and val ids

``train_aug`` = ``train`` plus ids that have XML but no SegmentationClass PNG, like the SBD-augmented list.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lowlabel.data.synth.classes import VOC_NAMES
from lowlabel.data.synth.config import VOCConfig
from lowlabel.data.synth.io import save_gray_png, save_jpeg, save_palette_png, write_lines
from lowlabel.data.synth.parallel import pmap
from lowlabel.data.synth.render import mask_bbox
from lowlabel.data.synth.scene import compose
from lowlabel.structures import IGNORE_INDEX

TASK_ID = 2


def boundary_band(label: np.ndarray, half_width: int) -> np.ndarray:
    """Bool (H, W): pixels within ``half_width`` of a change of ``label`` (VOC's void band)."""
    k = np.ones((2 * half_width + 1, 2 * half_width + 1), np.uint8)
    return cv2.dilate(label, k) != cv2.erode(label, k)


def voc_xml(image_id: str, w: int, h: int, objects: list[tuple[str, tuple[int, int, int, int]]], seg: bool) -> str:
    """A VOC annotation XML string; boxes are 0-based inclusive and written 1-based."""
    objs = "".join(
        f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n\t\t<truncated>0</truncated>\n"
        f"\t\t<difficult>0</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{b[0] + 1}</xmin>\n\t\t\t<ymin>{b[1] + 1}</ymin>\n"
        f"\t\t\t<xmax>{b[2] + 1}</xmax>\n\t\t\t<ymax>{b[3] + 1}</ymax>\n\t\t</bndbox>\n\t</object>\n"
        for name, b in objects
    )
    return (
        f"<annotation>\n\t<folder>VOC2012</folder>\n\t<filename>{image_id}.jpg</filename>\n"
        f"\t<source>\n\t\t<database>ShapesWorld</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{w}</width>\n\t\t<height>{h}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        f"\t<segmented>{int(seg)}</segmented>\n{objs}</annotation>\n"
    )


def _job(args: tuple) -> dict:
    cfg, out, image_id, index, seg, seed = args
    rng = np.random.default_rng([seed, TASK_ID, index])
    n = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    cats = [int(c) for c in rng.integers(cfg.num_classes, size=n)]
    scene = compose(rng, cats, cfg.obj, cfg.scene)
    h, w = scene.image.shape[:2]
    save_jpeg(out / "JPEGImages" / f"{image_id}.jpg", scene.image)
    objects = []
    cls_map = np.zeros((h, w), np.uint8)
    obj_map = np.zeros((h, w), np.uint8)
    marking = np.zeros((h, w), bool)
    for k, inst in enumerate(scene.instances):
        box = mask_bbox(inst.visible)
        if box is None:
            continue
        objects.append((VOC_NAMES[inst.category], box))
        cls_map[inst.visible] = inst.category + 1
        obj_map[inst.visible] = k + 1
        marking |= inst.marking & inst.visible
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    (out / "Annotations" / f"{image_id}.xml").write_text(voc_xml(image_id, w, h, objects, seg), encoding="utf-8")
    if seg:
        band = boundary_band(obj_map, cfg.boundary_px)
        save_palette_png(out / "SegmentationClass" / f"{image_id}.png", np.where(band, IGNORE_INDEX, cls_map))
        save_palette_png(out / "SegmentationObject" / f"{image_id}.png", np.where(band, IGNORE_INDEX, obj_map))
        save_gray_png(out / "diagnostics" / f"{image_id}_marking.png", marking.astype(np.uint8) * 255)
    return {"id": image_id, "classes": sorted({VOC_NAMES.index(n) for n, _ in objects})}


def generate_voc(cfg: VOCConfig, out: Path, seed: int, workers: int) -> None:
    """Write ``out`` (the ``voc/`` folder)."""
    n_tr, n_aug, n_val = cfg.num_train, cfg.num_aug_extra, cfg.num_val
    ids = [f"2026_{i:06d}" for i in range(n_tr + n_aug + n_val)]
    split_of = ["train"] * n_tr + ["aug"] * n_aug + ["val"] * n_val
    jobs = [(cfg, out, ids[i], i, split_of[i] != "aug", seed) for i in range(len(ids))]
    recs = pmap(_job, jobs, workers)
    train, aug, val = ids[:n_tr], ids[n_tr : n_tr + n_aug], ids[n_tr + n_aug :]
    seg_dir = out / "ImageSets" / "Segmentation"
    write_lines(seg_dir / "train.txt", train)
    write_lines(seg_dir / "val.txt", val)
    write_lines(seg_dir / "trainval.txt", train + val)
    write_lines(seg_dir / "train_aug.txt", train + aug)
    main_dir = out / "ImageSets" / "Main"
    by_split = {"train": recs[: n_tr + n_aug], "val": recs[n_tr + n_aug :]}
    by_split["trainval"] = by_split["train"] + by_split["val"]
    for split, rs in by_split.items():
        write_lines(main_dir / f"{split}.txt", [r["id"] for r in rs])
        for c, name in enumerate(VOC_NAMES[: cfg.num_classes]):
            write_lines(
                main_dir / f"{name}_{split}.txt", [f"{r['id']} {1 if c in r['classes'] else -1:2d}" for r in rs]
            )
