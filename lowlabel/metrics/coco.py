"""COCO box AP through faster-coco-eval (pycocotools semantics), with category subsets and a per-class table.

* Area ranges use the GT ``area`` field (not the box area), ``maxDets`` applies per image and category.
* A subset (RegionCLIP's novel/base/all) is scored by restricting the categories: COCOeval matches every
  (image, category) pair independently, so the subset numbers are read from one evaluation over all categories
  (``precision[..., cat, ...]`` restricted to the subset), which equals re-running with ``params.catIds`` set to the
  subset (``tests/metrics/test_coco.py`` checks this against pycocotools).
* A subset whose categories have no GT gives NaN (pycocotools prints -1). An empty detection list gives AP 0.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def load_gt(gt: Mapping[str, Any]) -> Any:
    """A faster-coco-eval ``COCO`` object from a GT dict in COCO ``instances`` format (the dict is copied)."""
    from faster_coco_eval import COCO

    for key in ("images", "annotations", "categories"):
        if key not in gt:
            raise ValueError(f"COCO ground truth has no '{key}' list")
    # the COCO API adds keys to the annotation dicts: copy those dicts (a shallow copy each, not a deepcopy)
    data = {k: [dict(x) for x in v] if isinstance(v, list) else copy.deepcopy(v) for k, v in gt.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(data)


def check_detections(detections: Sequence[Mapping[str, Any]], coco_gt: Any, where: str = "detections") -> list[dict]:
    """Validate COCO result entries ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.

    Raises:
        ValueError: a missing field, an unknown image or category id, a negative width/height or a non-finite value
            (the message names the entry index).
    """
    cats = set(coco_gt.getCatIds())
    images = set(coco_gt.getImgIds())
    out = []
    for i, det in enumerate(detections):
        try:
            entry = {"image_id": det["image_id"], "category_id": det["category_id"], "bbox": list(det["bbox"]),
                     "score": float(det["score"])}  # fmt: skip
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{where}: entry {i} lacks a field or has a bad value ({err})") from None
        if entry["category_id"] not in cats:
            raise ValueError(f"{where}: entry {i} has unknown category id {entry['category_id']}")
        if entry["image_id"] not in images:
            raise ValueError(f"{where}: entry {i} has unknown image id {entry['image_id']}")
        if len(entry["bbox"]) != 4:
            raise ValueError(f"{where}: entry {i} has a bbox of {len(entry['bbox'])} values, expected [x, y, w, h]")
        out.append(entry)
    if out:
        try:
            boxes = np.asarray([d["bbox"] for d in out], dtype=np.float64)  # (N, 4) x, y, w, h
        except (TypeError, ValueError):
            raise ValueError(f"{where}: a bbox has a non-numeric value") from None
        scores = np.asarray([d["score"] for d in out])
        nonfinite = np.flatnonzero(~np.isfinite(boxes).all(axis=1) | ~np.isfinite(scores))
        if nonfinite.size:
            raise ValueError(f"{where}: entry {nonfinite[0]} has a non-finite bbox or score")
        negative = np.flatnonzero((boxes[:, 2] < 0) | (boxes[:, 3] < 0))
        if negative.size:
            i = int(negative[0])
            raise ValueError(f"{where}: entry {i} has x1 < x0 or y1 < y0 (bbox [x, y, w, h] = {out[i]['bbox']})")
    return out


def evaluate(coco_gt: Any, detections: Sequence[Mapping[str, Any]]) -> Any:
    """Run faster-coco-eval ``bbox`` evaluation (evaluate + accumulate) and return the ``COCOeval_faster`` object."""
    from faster_coco_eval import COCOeval_faster

    dets = check_detections(detections, coco_gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(dets)  # fresh dicts from check_detections: loadRes may modify them
        ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=lambda *a, **k: None)
        ev.evaluate()
        ev.accumulate()
    return ev


def _mean_valid(values: np.ndarray) -> float:
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else float("nan")


def summarize(ev: Any, cat_ids: Sequence[int] | None = None) -> dict[str, float]:
    """``AP AP50 AP75 APs APm APl`` (percent) over ``cat_ids`` (default: all), pycocotools' ``_summarize``."""
    precision = ev.eval["precision"]  # (T iou, R recall, K cat, A area, M maxDets)
    params = ev.params
    cat_index = _cat_index(params.catIds, cat_ids)
    m = list(params.maxDets).index(100)
    t50 = int(np.flatnonzero(np.isclose(params.iouThrs, 0.5))[0])
    t75 = int(np.flatnonzero(np.isclose(params.iouThrs, 0.75))[0])
    area = {lbl: i for i, lbl in enumerate(params.areaRngLbl)}
    p = precision[:, :, cat_index]
    return {
        "AP": _mean_valid(p[:, :, :, area["all"], m]) * 100,
        "AP50": _mean_valid(p[t50, :, :, area["all"], m]) * 100,
        "AP75": _mean_valid(p[t75, :, :, area["all"], m]) * 100,
        "APs": _mean_valid(p[:, :, :, area["small"], m]) * 100,
        "APm": _mean_valid(p[:, :, :, area["medium"], m]) * 100,
        "APl": _mean_valid(p[:, :, :, area["large"], m]) * 100,
    }


def _cat_index(all_ids: Sequence[int], cat_ids: Sequence[int] | None) -> list[int]:
    all_ids = list(all_ids)
    if cat_ids is None:
        return list(range(len(all_ids)))
    missing = [c for c in cat_ids if c not in all_ids]
    if missing:
        raise ValueError(f"unknown category id(s) in the split: {missing}")
    return [all_ids.index(c) for c in cat_ids]


def per_class_ap(ev: Any) -> dict[int, dict[str, float]]:
    """Per category id: ``{"AP", "AP50"}`` in percent (NaN when the category has no GT)."""
    precision = ev.eval["precision"]
    params = ev.params
    m = list(params.maxDets).index(100)
    t50 = int(np.flatnonzero(np.isclose(params.iouThrs, 0.5))[0])
    a = list(params.areaRngLbl).index("all")
    return {
        int(c): {
            "AP": _mean_valid(precision[:, :, k, a, m]) * 100,
            "AP50": _mean_valid(precision[t50, :, k, a, m]) * 100,
        }
        for k, c in enumerate(params.catIds)
    }


def coco_box_ap(
    gt: Mapping[str, Any] | Any,
    detections: Sequence[Mapping[str, Any]],
    splits: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, Any]:
    """COCO box AP per category subset.

    Args:
        gt: COCO ``instances`` dict, or a ``COCO`` object from :func:`load_gt`.
        detections: COCO result entries (``bbox`` is ``[x, y, w, h]`` in pixels, exclusive extents).
        splits: subset name -> category ids, e.g. ``{"all": [...], "novel": [...], "base": [...]}``;
            default ``{"all": every GT category}``.

    Returns:
        ``{<subset>: {"AP", "AP50", "AP75", "APs", "APm", "APl"}, ..., "per_class": {cat_id: {"AP", "AP50"}}}``,
        all in percent.
    """
    coco_gt = load_gt(gt) if isinstance(gt, Mapping) else gt
    ev = evaluate(coco_gt, detections)
    out: dict[str, Any] = {}
    for name, ids in (splits or {"all": list(coco_gt.getCatIds())}).items():
        out[name] = summarize(ev, [int(c) for c in ids])
    out["per_class"] = per_class_ap(ev)
    return out
