"""``coco/``: ShapesWorld in the COCO layout, with captions and an open-vocabulary (base/novel) split.

::

    coco/train2017/<012d>.jpg   coco/val2017/<012d>.jpg
    coco/annotations/instances_{train,val}.json   boxes (train: base categories only; val: all)
    coco/annotations/captions_{train,val}.json    3 captions per image; they also name novel objects
    coco/annotations/ovd_split.json               {"all": [ids], "base": [ids], "novel": [ids]}

Category ids are not contiguous (as in COCO): category ``k`` has id ``k + 1 + k // 5``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lowlabel.data.synth.classes import MARK_COLORS, SYNONYMS, VOC_NAMES, category_look, color_word
from lowlabel.data.synth.config import COCOConfig
from lowlabel.data.synth.io import save_jpeg, write_json
from lowlabel.data.synth.parallel import pmap
from lowlabel.data.synth.render import mask_bbox
from lowlabel.data.synth.scene import Instance, compose

TASK_ID = 4
SPOKEN = {"diningtable": "dining table", "tvmonitor": "tv monitor", "pottedplant": "potted plant"}
TEMPLATES = ("{objs}.", "a photo of {objs}.", "{objs} in the scene.", "there is {objs}.", "a picture showing {objs}.")


def category_id(k: int) -> int:
    return k + 1 + k // 5


def class_words(k: int) -> list[str]:
    """Every word that names category ``k`` in captions (canonical spoken name first, then synonyms)."""
    name = VOC_NAMES[k]
    return [SPOKEN.get(name, name), *[s for s in SYNONYMS[name] if s != SPOKEN.get(name, name)]]


def polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons (pixel-corner coordinates) of a bool mask; falls back to its box."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = [[float(v) + 0.5 for v in c.reshape(-1)] for c in contours if len(c) >= 3]
    if not polys:
        x0, y0, x1, y1 = mask_bbox(mask)
        polys = [[x0, y0, x1 + 1, y0, x1 + 1, y1 + 1, x0, y1 + 1]]
    return polys


def describe(rng: np.random.Generator, inst: Instance, cfg: COCOConfig, img_area: int) -> str:
    words = class_words(inst.category)
    noun = words[1 + int(rng.integers(len(words) - 1))] if rng.random() < cfg.synonym_prob else words[0]
    adj = []
    if rng.random() < cfg.attribute_prob * 0.5:
        adj.append("small" if inst.visible.sum() < 0.05 * img_area else "large")
    if rng.random() < cfg.attribute_prob:
        adj.append(color_word(inst.spec.rgb))
    phrase = " ".join(["a", *adj, noun])
    if inst.spec.mark_strength > 0 and rng.random() < 0.3:
        look = category_look(inst.category)
        c1, c2 = (color_word(MARK_COLORS[i]) for i in look.mark_colors)
        phrase += f" with {c1} and {c2} {look.pattern}"
    return phrase


def caption(rng: np.random.Generator, instances: list[Instance], cfg: COCOConfig, img_area: int) -> str:
    """One caption: a random subset (>= 1) of the objects, named with synonyms and attributes."""
    order = sorted(range(len(instances)), key=lambda i: -int(instances[i].visible.sum()))
    keep = [i for i in order if rng.random() >= cfg.omit_prob] or order[:1]
    parts = [describe(rng, instances[i], cfg, img_area) for i in keep]
    objs = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    text = TEMPLATES[int(rng.integers(len(TEMPLATES)))].format(objs=objs)
    return text[0].upper() + text[1:]


def _job(args: tuple) -> dict:
    cfg, out, split, image_id, index, seed = args
    rng = np.random.default_rng([seed, TASK_ID, index])
    n = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    cats = [int(c) for c in rng.integers(cfg.num_classes, size=n)]
    scene = compose(rng, cats, cfg.obj, cfg.scene)
    h, w = scene.image.shape[:2]
    file_name = f"{image_id:012d}.jpg"
    save_jpeg(out / f"{split}2017" / file_name, scene.image)
    novel = set(range(cfg.num_classes - cfg.num_novel, cfg.num_classes))
    anns = []
    for inst in scene.instances:
        box = mask_bbox(inst.visible)
        if box is None or (split == "train" and inst.category in novel):
            continue
        x0, y0, x1, y1 = box
        anns.append(
            {
                "category_id": category_id(inst.category),
                "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
                "area": int(inst.visible.sum()),
                "iscrowd": 0,
                "segmentation": polygons(inst.visible),
            }
        )
    visible = [i for i in scene.instances if i.visible.any()]
    caps = [caption(rng, visible, cfg, h * w) for _ in range(cfg.captions_per_image)]
    return {"image": {"id": image_id, "file_name": file_name, "width": w, "height": h}, "anns": anns, "caps": caps}


def generate_coco(cfg: COCOConfig, out: Path, seed: int, workers: int) -> None:
    """Write ``out`` (the ``coco/`` folder)."""
    categories = [
        {"id": category_id(k), "name": VOC_NAMES[k], "supercategory": "shape"} for k in range(cfg.num_classes)
    ]
    ids = [category_id(k) for k in range(cfg.num_classes)]
    base, novel = ids[: cfg.num_classes - cfg.num_novel], ids[cfg.num_classes - cfg.num_novel :]
    write_json(out / "annotations" / "ovd_split.json", {"all": ids, "base": base, "novel": novel})
    offset = 0
    for split, n in (("train", cfg.num_train), ("val", cfg.num_val)):
        jobs = [(cfg, out, split, offset + i + 1, offset + i, seed) for i in range(n)]
        offset += n
        recs = pmap(_job, jobs, workers)
        images = [r["image"] for r in recs]
        anns, caps = [], []
        for r in recs:
            for a in r["anns"]:
                anns.append({"id": len(anns) + 1, "image_id": r["image"]["id"], **a})
            for c in r["caps"]:
                caps.append({"id": len(caps) + 1, "image_id": r["image"]["id"], "caption": c})
        info = {"description": f"ShapesWorld COCO-style {split}", "version": "1.0"}
        write_json(
            out / "annotations" / f"instances_{split}.json",
            {"info": info, "images": images, "annotations": anns, "categories": categories},
        )
        write_json(
            out / "annotations" / f"captions_{split}.json", {"info": info, "images": images, "annotations": caps}
        )
