"""COCO box AP: agreement with pycocotools (restricted catIds) on random cases, and edge cases."""

from __future__ import annotations

import contextlib
import copy
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO as RefCOCO
from pycocotools.cocoeval import COCOeval as RefEval

from lowlabel.metrics import coco


def random_case(seed: int, n_images: int = 12, n_cats: int = 5) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    images = [{"id": i + 1, "width": 200, "height": 160, "file_name": f"{i}.jpg"} for i in range(n_images)]
    cats = [{"id": c * 3 + 1, "name": f"c{c}"} for c in range(n_cats)]  # non-contiguous ids
    anns, dets = [], []
    for img in images:
        for _ in range(rng.integers(0, 5)):
            cat = cats[rng.integers(0, n_cats - 1)]["id"]  # the last category never has GT
            x, y = rng.uniform(0, 150), rng.uniform(0, 110)
            w, h = rng.uniform(2, 60), rng.uniform(2, 60)
            area = w * h * rng.choice([1.0, 0.5, 3.0])  # the area field differs from the box area
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": img["id"],
                    "category_id": cat,
                    "bbox": [x, y, w, h],
                    "area": area,
                    "iscrowd": int(rng.random() < 0.1),
                }
            )
            for _ in range(rng.integers(0, 3)):
                jitter = rng.normal(0, 6, 4)
                dets.append(
                    {
                        "image_id": img["id"],
                        "category_id": cat,
                        "score": float(rng.random()),
                        "bbox": [x + jitter[0], y + jitter[1], max(w + jitter[2], 1), max(h + jitter[3], 1)],
                    }
                )
        for _ in range(rng.integers(0, 3)):  # false positives, also in the GT-less category
            dets.append(
                {
                    "image_id": img["id"],
                    "category_id": cats[rng.integers(0, n_cats)]["id"],
                    "score": float(rng.random()),
                    "bbox": [rng.uniform(0, 150), rng.uniform(0, 100), 20.0, 30.0],
                }
            )
    return {"images": images, "annotations": anns, "categories": cats}, dets


def reference_stats(gt: dict, dets: list[dict], cat_ids: list[int]) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        ref_gt = RefCOCO()
        ref_gt.dataset = copy.deepcopy(gt)
        ref_gt.createIndex()
        ref_dt = ref_gt.loadRes(copy.deepcopy(dets))
        ev = RefEval(ref_gt, ref_dt, "bbox")
        ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float("nan") if v == -1 else v * 100 for v in ev.stats[:6]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pycocotools_per_subset(seed: int) -> None:
    gt, dets = random_case(seed)
    splits = {"all": [1, 4, 7, 10, 13], "novel": [4, 13], "base": [1, 7, 10]}
    out = coco.coco_box_ap(gt, dets, splits)
    for name, ids in splits.items():
        ref = reference_stats(gt, dets, ids)
        ours = [out[name][k] for k in coco.SUMMARY_KEYS]
        for a, b in zip(ours, ref):
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-9), (name, ours, ref)
    assert math.isnan(out["per_class"][13]["AP"])  # no GT for category 13


def test_perfect_and_empty_detections() -> None:
    gt, _ = random_case(5)
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
               for a in gt["annotations"] if not a["iscrowd"]]  # fmt: skip
    out = coco.coco_box_ap(gt, perfect)
    assert out["all"]["AP50"] == pytest.approx(100.0)
    empty = coco.coco_box_ap(gt, [])
    assert empty["all"]["AP"] == 0.0 and empty["all"]["AP50"] == 0.0


def test_unknown_category_and_bad_box() -> None:
    gt, _ = random_case(0)
    with pytest.raises(ValueError, match="unknown category id 99"):
        coco.coco_box_ap(gt, [{"image_id": 1, "category_id": 99, "bbox": [0, 0, 5, 5], "score": 1.0}])
    with pytest.raises(ValueError, match="x1 < x0"):
        coco.coco_box_ap(gt, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, -5, 5], "score": 1.0}])
    with pytest.raises(ValueError, match="unknown category id"):
        coco.coco_box_ap(gt, [], {"novel": [2]})
