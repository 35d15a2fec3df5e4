"""A tiny COCO-layout folder with captions and an open-vocabulary split, written by the open-vocabulary tests.

Images are black with pure-colour rectangles; the category is the colour, and ``blue`` (id 4, ids are not
contiguous as in COCO) is novel: its boxes are left out of ``instances_train.json`` but captions name it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CATEGORIES = [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}, {"id": 4, "name": "blue"}]
RGB = {1: (255, 0, 0), 2: (0, 255, 0), 4: (0, 0, 255)}
NOVEL = [4]
# per split: (image size (H, W), [(category id, box xywh[, id of the colour drawn]), ...]) of each image; the colour
# is the category's unless a third entry names another one (a box whose content does not look like its label)
SCENES = {
    "train": [((40, 48), [(1, (4, 4, 16, 16))]), ((40, 48), [(2, (20, 10, 20, 20)), (4, (2, 2, 10, 10))]),
              ((40, 48), [(4, (8, 8, 24, 24))]), ((40, 48), [(1, (30, 4, 12, 30)), (2, (2, 20, 12, 12))])],
    "val": [((32, 32), [(1, (8, 8, 16, 16))]), ((32, 40), [(2, (4, 4, 12, 12)), (4, (20, 16, 12, 12))]),
            ((32, 32), [(4, (8, 8, 16, 16))])],
}
WORDS = {1: "red", 2: "green", 4: "blue"}


def write_coco(root: Path, scenes: dict | None = None) -> Path:
    """Write ``root/{train,val}2017/*.png`` and ``root/annotations/{instances,captions}_{split}.json`` and
    ``ovd_split.json``; return ``root``."""
    scenes = scenes or SCENES
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    image_id = 0
    for split, images in scenes.items():
        infos, anns, caps = [], [], []
        for (h, w), objects in images:
            image_id += 1
            pixels = np.zeros((h, w, 3), np.uint8)
            for cat, (x, y, bw, bh), *drawn in objects:
                pixels[y:y + bh, x:x + bw] = RGB[drawn[0] if drawn else cat]
                if split != "train" or cat not in NOVEL:
                    anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat, "bbox": [x, y, bw, bh],
                                 "area": bw * bh, "iscrowd": 0})
            name = f"{image_id:012d}.png"
            (root / f"{split}2017").mkdir(exist_ok=True)
            Image.fromarray(pixels).save(root / f"{split}2017" / name)
            infos.append({"id": image_id, "file_name": name, "height": h, "width": w})
            text = " and ".join(f"a {WORDS[obj[0]]} box" for obj in objects)
            caps += [{"id": len(caps) + k + 1, "image_id": image_id, "caption": c}
                     for k, c in enumerate([f"A photo of {text}.", f"There is {text}."])]
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": infos, "annotations": anns, "categories": CATEGORIES}))
        (root / "annotations" / f"captions_{split}.json").write_text(json.dumps({"images": infos, "annotations": caps}))
    ids = [c["id"] for c in CATEGORIES]
    split_file = {"all": ids, "base": [i for i in ids if i not in NOVEL], "novel": NOVEL}
    (root / "annotations" / "ovd_split.json").write_text(json.dumps(split_file))
    return root
