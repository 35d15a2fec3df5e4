"""What the ``ovd`` tests start from, written into a tmp folder: a tiny CLIP run, a tiny class-agnostic RPN run, and
COCO 2017 and LVIS v1 folders in their real layouts (file patterns, category ids, LVIS's ``frequency`` and
``coco_url``) with a few pure-colour boxes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lowlabel.engine.config import config_to_dict, load_config_file
from lowlabel.models.weights import CHECKPOINT_FORMAT

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def write_rpn_run(folder: Path, coco: Path) -> Path:
    """A class-agnostic detector run (random weights, the coco-rpn-synth-quick recipe at width 4) as proposer."""
    from lowlabel.methods.cross_domain import detector

    cfg = load_config_file(detector.CONFIG, CONFIGS / "detector" / "coco-rpn-synth-quick.yaml")
    cfg.data = dataclasses.replace(cfg.data, root=str(coco), classes=["object"])  # named: no annotations read
    rpn = dataclasses.replace(cfg.model.rpn, pre_nms_top_n_test=100, post_nms_top_n_test=16)
    cfg.model = dataclasses.replace(cfg.model, backbone="resnet_small", width=4, pretrained="", min_size=0,
                                    max_size=0, rpn=rpn, roi=dataclasses.replace(cfg.model.roi, pool_size=4))
    method = detector.build(cfg)
    (folder / "checkpoints").mkdir(parents=True)
    ckpt = {"format": CHECKPOINT_FORMAT, "version": 1, "method": "detector", "config": config_to_dict(method.config),
            "nets": {"detector": method.model.state_dict()}}
    torch.save(ckpt, folder / "checkpoints" / "last.ckpt")
    return folder


# (H, W), [(category id, box xywh)] per image; the colour drawn is picked from the category id
SCENES = {
    "train": [((40, 48), [(1, (4, 4, 16, 16)), (5, (26, 10, 14, 14))]), ((40, 48), [(2, (20, 10, 20, 20))])],
    "val": [((32, 40), [(1, (4, 4, 12, 12)), (5, (20, 16, 12, 12))]), ((32, 32), [(2, (8, 8, 16, 16))])],
}


def write_layout(root: Path, *, images: str, instances: str, categories: list[dict], novel: list[int],
                 lvis: bool = False) -> Path:
    """``SCENES`` as ``root/<images>/*.png`` and ``root/<instances>`` (``{split}`` filled in); the train file lacks the
    ``novel`` boxes, as OVR-CNN's and LVIS's base training does not see them."""
    image_id = 0
    for split, scenes in SCENES.items():
        folder = root / images.replace("{split}", split)
        folder.mkdir(parents=True, exist_ok=True)
        infos, anns = [], []
        for (h, w), objects in scenes:
            image_id += 1
            pixels = np.zeros((h, w, 3), np.uint8)
            name = f"{image_id:012d}.png"
            for cat, (x, y, bw, bh) in objects:
                pixels[y:y + bh, x:x + bw] = (37 * cat % 256, 255, 91 * cat % 256)
                if split != "train" or cat not in novel:
                    anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": cat,
                                 "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0})
            Image.fromarray(pixels).save(folder / name)
            info = {"id": image_id, "height": h, "width": w}
            if lvis:  # LVIS names the file through its COCO URL, and lists the categories verified absent
                info.update(coco_url=f"http://images.cocodataset.org/{split}2017/{name}", neg_category_ids=[],
                            not_exhaustive_category_ids=[])
            else:
                info["file_name"] = name
            infos.append(info)
        path = root / instances.replace("{split}", split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"images": infos, "annotations": anns, "categories": categories}))
    return root


def coco_ovd_categories() -> tuple[list[dict], list[int]]:
    """COCO's categories as the shipped 48/17 split names them, plus one of the 15 it leaves out (10, traffic light)."""
    split = json.loads((CONFIGS / "ovd" / "coco-ovd-48-17.json").read_text())
    cats = [{"id": int(k), "name": v} for k, v in split["names"].items()] + [{"id": 10, "name": "traffic light"}]
    return sorted(cats, key=lambda c: c["id"]), split["novel"]


def lvis_categories() -> tuple[list[dict], list[int]]:
    """Three LVIS-style categories, one per frequency; the rare one (5) is novel."""
    cats = [{"id": 1, "name": "aerosol_can", "frequency": "c"}, {"id": 2, "name": "banana", "frequency": "f"},
            {"id": 5, "name": "bow_(weapon)", "frequency": "r"}]
    return cats, [5]
