"""``domains/``: street-like ShapesWorld scenes, clear (source, A) and foggy (target, B), CUT-style.

::

    domains/trainA/*.jpg  domains/testA/*.jpg        source: clear scenes (labelled)
    domains/trainB/*.jpg  domains/testB/*.jpg        target: the same world under depth-dependent fog,
                                                     low contrast and noise (other scenes than A)
    domains/testB_clean/*.jpg                        clean twin of each target test image (diagnosis only)
    domains/annotations/{trainA,testA,testB}.json    COCO boxes (trainB is unlabeled)

Fog follows the atmospheric scattering model ``I = J t + A (1 - t)``, ``t = exp(-beta d)``, with the
depth ``d`` in [0, 1] growing towards the horizon (as Foggy Cityscapes does with real depth).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from lowlabel.data.synth.classes import VOC_NAMES
from lowlabel.data.synth.coco_task import category_id
from lowlabel.data.synth.config import DomainsConfig, ObjectStyle
from lowlabel.data.synth.io import save_jpeg, write_json
from lowlabel.data.synth.parallel import pmap
from lowlabel.data.synth.render import hsv, mask_bbox, paint_object, pixel_grid, sample_object, to_uint8

TASK_ID = 5
SPLITS = ("trainA", "trainB", "testA", "testB")


def street(rng: np.random.Generator, cfg: DomainsConfig) -> tuple[np.ndarray, np.ndarray, list[tuple[int, tuple]]]:
    """A clear scene: image (H, W, 3) float, depth (H, W) in [0, 1], and ``(category, box)`` per object."""
    h, w = cfg.size
    yy, xx = pixel_grid(h, w)
    horizon = rng.uniform(0.3, 0.45) * h
    depth = np.where(yy < horizon, 1.0, np.clip((h - yy) / (h - horizon), 0.0, 1.0) ** 1.5).astype(np.float32)
    sky = np.asarray(hsv(rng.uniform(0.55, 0.65), rng.uniform(0.2, 0.5), rng.uniform(0.7, 0.95)), np.float32)
    ground = np.asarray(hsv(rng.uniform(0.05, 0.35), rng.uniform(0.2, 0.5), rng.uniform(0.3, 0.6)), np.float32)
    img = np.where((yy < horizon)[..., None], sky * (0.85 + 0.15 * yy[..., None] / horizon), ground)
    vx = rng.uniform(0.35, 0.65) * w  # road: a trapezoid towards the vanishing point
    half = (yy - horizon) / (h - horizon) * 0.45 * w
    road = (yy > horizon) & (np.abs(xx - vx - (yy - horizon) * rng.uniform(-0.2, 0.2)) < half)
    img[road] = np.asarray([0.35, 0.35, 0.37], np.float32) + 0.05 * np.sin(yy[road] * 0.5)[..., None]
    for k in range(int(rng.integers(2, 6))):  # buildings on the horizon
        x0 = rng.uniform(0, w)
        bw, bh = rng.uniform(0.05, 0.2) * w, rng.uniform(0.1, 0.3) * h
        region = (np.abs(xx - x0) < bw / 2) & (yy < horizon) & (yy > horizon - bh)
        img[region] = np.asarray(hsv(rng.random(), 0.15, rng.uniform(0.3, 0.6)), np.float32) + 0.02 * k
    style = replace(ObjectStyle(), marking_dropout=0.0)
    n = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    bases = np.sort(rng.uniform(horizon + 4, h - 2, size=n))  # far (small y) first, so near objects occlude
    owner = np.full((h, w), -1, np.int16)
    cats = []
    for i, yb in enumerate(bases):
        near = (yb - horizon) / (h - horizon)
        size = (0.06 + 0.22 * near) * h
        cat = int(rng.integers(len(cfg.classes)))
        spec = sample_object(
            rng, VOC_NAMES.index(cfg.classes[cat]), style, rng.uniform(0.05, 0.95) * w, yb - size * 0.7, size, 25.0
        )
        owner[paint_object(img, spec, yy, xx).body] = i
        cats.append(cat)
    objects = []
    for i, cat in enumerate(cats):
        box = mask_bbox(owner == i)
        if box is not None and (owner == i).sum() >= 12:
            objects.append((cat, box))
    return img, depth, objects


def fog(rng: np.random.Generator, img: np.ndarray, depth: np.ndarray, cfg: DomainsConfig) -> np.ndarray:
    """Target-domain rendering: depth-dependent fog, low contrast and noise."""
    beta = rng.uniform(*cfg.fog_density)
    t = np.exp(-beta * depth)[..., None]
    airlight = rng.uniform(0.7, 0.9)
    out = img * t + airlight * (1 - t)
    c = rng.uniform(*cfg.contrast)
    m = out.mean()
    out = m + (out - m) * c
    return out + rng.normal(0, cfg.noise_std, size=out.shape).astype(np.float32)


def _job(args: tuple) -> dict:
    cfg, out, split, index, seed = args
    rng = np.random.default_rng([seed, TASK_ID, SPLITS.index(split), index])
    img, depth, objects = street(rng, cfg)
    name = f"{split}_{index:06d}.jpg"
    if split.endswith("B"):
        if split == "testB":
            save_jpeg(out / "testB_clean" / name, to_uint8(img))
        img = fog(rng, img, depth, cfg)
    else:
        img = img + rng.normal(0, 0.01, size=img.shape).astype(np.float32)
    save_jpeg(out / split / name, to_uint8(img))
    h, w = cfg.size
    return {"image": {"file_name": name, "width": w, "height": h}, "objects": objects}


def generate_domains(cfg: DomainsConfig, out: Path, seed: int, workers: int) -> None:
    """Write ``out`` (the ``domains/`` folder)."""
    categories = [{"id": category_id(VOC_NAMES.index(n)), "name": n, "supercategory": "street"} for n in cfg.classes]
    counts = {"trainA": cfg.num_train_a, "trainB": cfg.num_train_b, "testA": cfg.num_test_a, "testB": cfg.num_test_b}
    for split in SPLITS:
        recs = pmap(_job, [(cfg, out, split, i, seed) for i in range(counts[split])], workers)
        if split == "trainB":
            continue
        images, anns = [], []
        for i, r in enumerate(recs):
            images.append({"id": i + 1, **r["image"]})
            for cat, (x0, y0, x1, y1) in r["objects"]:
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i + 1,
                        "category_id": categories[cat]["id"],
                        "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
                        "area": (x1 - x0 + 1) * (y1 - y0 + 1),
                        "iscrowd": 0,
                    }
                )
        write_json(
            out / "annotations" / f"{split}.json", {"images": images, "annotations": anns, "categories": categories}
        )
