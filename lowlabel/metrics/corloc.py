"""CorLoc (correct localization), with the semantics of OICR/PCL ``dis_eval``.

Per class, over the images of the set that contain at least one GT box of the class (difficult boxes included, as
``dis_eval`` does not filter them): an image counts when its top-scoring box of that class has IoU ``> 0.5``
(strict, ``+1`` areas on inclusive corners) with any GT box of the class. CorLoc of the class is that count divided
by the number of images containing it; the reported CorLoc is the mean over classes that occur in the set.

``dis_eval`` counts every line of the class's detection file; the PCL/OICR writers put exactly one line (the top
box) per image and class, so with several lines per image we keep the highest-scoring one (the first on ties),
which is the same thing for files written that way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lowlabel.metrics.voc_ap import iou_plus1
from lowlabel.metrics.wsol import to_numpy


def top_boxes(detections: Sequence[tuple[str, float, Sequence[float]]]) -> dict[str, np.ndarray]:
    """Highest-scoring box per image (first on ties) from ``(image_id, score, [x0, y0, x1, y1])`` entries."""
    best: dict[str, tuple[float, np.ndarray]] = {}
    for image_id, score, box in detections:
        if image_id not in best or float(score) > best[image_id][0]:
            best[image_id] = (float(score), np.asarray(box, dtype=np.float64))
    return {k: v[1] for k, v in best.items()}


def corloc_class(
    detections: Sequence[tuple[str, float, Sequence[float]]],
    gt_boxes: Mapping[str, Any],
    iou_thresh: float = 0.5,
) -> tuple[int, int]:
    """Hits and positives of one class.

    Args:
        detections: ``(image_id, score, [x0, y0, x1, y1])`` entries, inclusive corners.
        gt_boxes: image id -> ``(N, 4)`` inclusive GT boxes of this class (N may be 0).

    Returns:
        ``(hits, n_images)``: images whose top box has IoU ``> iou_thresh``, and images containing the class.
    """
    tops = top_boxes(detections)
    hits = positives = 0
    for image_id, boxes in gt_boxes.items():
        gt = np.asarray(to_numpy(boxes), dtype=np.float64).reshape(-1, 4)
        if len(gt) == 0:
            continue
        positives += 1
        box = tops.get(image_id)
        if box is not None and float(iou_plus1(box, gt).max()) > iou_thresh:
            hits += 1
    return hits, positives


def corloc(
    detections: Mapping[str, Sequence[tuple[str, float, Sequence[float]]]],
    gt: Mapping[str, Mapping[str, Any]],
    iou_thresh: float = 0.5,
) -> dict[str, Any]:
    """CorLoc over classes.

    Args:
        detections: class name -> its detections ``(image_id, score, box)`` (a class may be missing: all misses).
        gt: class name -> image id -> ``(N, 4)`` GT boxes; the classes evaluated are the keys of ``gt``.

    Returns:
        ``{"CorLoc": percent, "per_class": {class: percent or None}}`` (None for a class absent from the set).
    """
    per_class: dict[str, float | None] = {}
    for name, boxes in gt.items():
        hits, positives = corloc_class(detections.get(name, []), boxes, iou_thresh)
        per_class[name] = hits * 100.0 / positives if positives else None
    valid = [v for v in per_class.values() if v is not None]
    return {"CorLoc": float(np.mean(valid)) if valid else float("nan"), "per_class": per_class}
