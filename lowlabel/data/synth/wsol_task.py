"""``wsol/``: ShapesWorld in the wsolevaluation layout (boxes, and OpenImages-style masks for PxAP).

::

    wsol/images/ShapesWorld/{train,val,test}/<nnnnnn>.jpg
    wsol/metadata/ShapesWorld/{train,val,test}/{image_ids,class_labels,image_sizes,localization}.txt
    wsol/metadata/ShapesWorld/class_names.txt
    wsol/metadata/ShapesWorldMask/{val,test}/...      (localization.txt: image_id,mask_path,ignore_path)
    wsol/masks/{val,test}/<nnnnnn>_mask.png, <nnnnnn>_ignore.png     (0/255)
    wsol/diagnostics/{val,test}/<nnnnnn>_marking.png + info.csv      (marking masks, for calibration)

``image_ids.txt`` entries (``val/000003.jpg``) are relative to ``images/ShapesWorld/`` for both metadata
folders; the mask metadata shares the images of the box metadata.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lowlabel.data.synth.classes import VOC_NAMES
from lowlabel.data.synth.config import WSOLConfig
from lowlabel.data.synth.io import save_gray_png, save_jpeg, write_lines
from lowlabel.data.synth.parallel import pmap
from lowlabel.data.synth.render import mask_bbox
from lowlabel.data.synth.scene import compose

TASK_ID = 1
SPLITS = ("train", "val", "test")


def _job(args: tuple) -> dict:
    cfg, out, split, index, seed = args
    for attempt in range(100):  # an object hidden entirely (by clutter or the frame) is drawn again
        key = [seed, TASK_ID, SPLITS.index(split), index] + ([attempt] if attempt else [])  # attempt 0: as before
        rng = np.random.default_rng(key)
        label = int(rng.integers(cfg.num_classes))
        scene = compose(rng, [label], cfg.obj, cfg.scene)
        inst = scene.instances[0]
        if inst.visible.any():
            break
    else:
        raise RuntimeError(f"ShapesWorld wsol {split} image {index}: no visible object in 100 draws")
    stem = f"{index:06d}"
    image_id = f"{split}/{stem}.jpg"
    save_jpeg(out / "images" / "ShapesWorld" / image_id, scene.image)
    h, w = scene.image.shape[:2]
    box = mask_bbox(inst.visible)
    rec = {
        "image_id": image_id,
        "label": label,
        "size": (w, h),
        "box": box,
        "marked": inst.spec.mark_strength > 0,
        "habitat": scene.habitat is not None,
    }
    if split != "train":
        mask = inst.visible.astype(np.uint8) * 255
        save_gray_png(out / "masks" / split / f"{stem}_mask.png", mask)
        kernel = np.ones((3, 3), np.uint8)
        band = cv2.dilate(mask, kernel, iterations=2) > 0
        ignore = (band & ~inst.visible).astype(np.uint8) * 255
        save_gray_png(out / "masks" / split / f"{stem}_ignore.png", ignore)
        marking = (inst.marking & inst.visible).astype(np.uint8) * 255
        save_gray_png(out / "diagnostics" / split / f"{stem}_marking.png", marking)
        rec["marking_share"] = float(marking.astype(bool).sum() / max(inst.visible.sum(), 1))
    return rec


def generate_wsol(cfg: WSOLConfig, out: Path, seed: int, workers: int) -> None:
    """Write ``out`` (the ``wsol/`` folder)."""
    names = VOC_NAMES[: cfg.num_classes]
    write_lines(out / "metadata" / "ShapesWorld" / "class_names.txt", list(names))
    write_lines(out / "metadata" / "ShapesWorldMask" / "class_names.txt", list(names))
    counts = {"train": cfg.num_train, "val": cfg.num_val, "test": cfg.num_test}
    for split in SPLITS:
        recs = pmap(_job, [(cfg, out, split, i, seed) for i in range(counts[split])], workers)
        meta = out / "metadata" / "ShapesWorld" / split
        write_lines(meta / "image_ids.txt", [r["image_id"] for r in recs])
        write_lines(meta / "class_labels.txt", [f"{r['image_id']},{r['label']}" for r in recs])
        write_lines(meta / "image_sizes.txt", [f"{r['image_id']},{r['size'][0]},{r['size'][1]}" for r in recs])
        write_lines(meta / "localization.txt", [f"{r['image_id']},{','.join(map(str, r['box']))}" for r in recs])
        if split == "train":
            continue
        mmeta = out / "metadata" / "ShapesWorldMask" / split
        write_lines(mmeta / "image_ids.txt", [r["image_id"] for r in recs])
        write_lines(mmeta / "class_labels.txt", [f"{r['image_id']},{r['label']}" for r in recs])
        write_lines(mmeta / "image_sizes.txt", [f"{r['image_id']},{r['size'][0]},{r['size'][1]}" for r in recs])
        loc = []
        for r in recs:
            stem = Path(r["image_id"]).stem
            loc.append(f"{r['image_id']},{split}/{stem}_mask.png,{split}/{stem}_ignore.png")
        write_lines(mmeta / "localization.txt", loc)
        write_lines(
            out / "diagnostics" / split / "info.csv",
            ["image_id,label,marking_visible,habitat_background,marking_share"]
            + [
                f"{r['image_id']},{r['label']},{int(r['marked'])},{int(r['habitat'])},{r['marking_share']:.4f}"
                for r in recs
            ],
        )
