"""PASCAL VOC detection AP (py-faster-rcnn ``voc_eval``) with the 07 11-point and the 2010+ all-point variants.

Conventions: boxes are inclusive pixel corners ``x0, y0, x1, y1`` (VOC XML, 1-based; any consistent origin works)
and areas use ``+1``; detections of a class are sorted by score (``np.argsort(-score)``, as upstream); a
detection is a true positive when its best IoU with the image's GT boxes is ``> iou_thresh`` (strict), that GT box
is not difficult and not yet matched; a match with a difficult box is neither TP nor FP; recall is over the
non-difficult GT boxes. Which AP variant was used is recorded in the output (``use_07_metric``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lowlabel.metrics.wsol import to_numpy


def iou_plus1(box: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of one inclusive box ``(4,)`` with inclusive boxes ``(N, 4)`` using ``+1`` widths, float64 ``(N,)``."""
    iw = np.maximum(np.minimum(gt[:, 2], box[2]) - np.maximum(gt[:, 0], box[0]) + 1.0, 0.0)
    ih = np.maximum(np.minimum(gt[:, 3], box[3]) - np.maximum(gt[:, 1], box[1]) + 1.0, 0.0)
    inter = iw * ih
    union = (
        (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
        + (gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0)
        - inter
    )
    return inter / union


def voc_ap(rec: Any, prec: Any, use_07_metric: bool = False) -> float:
    """Area under a precision/recall curve.

    Args:
        rec: recall ``(D,)`` after each detection (non-decreasing).
        prec: precision ``(D,)``.
        use_07_metric: VOC2007 11-point interpolation (max precision at recall >= 0, 0.1, ..., 1) if True,
            else the VOC2010+ area under the monotone precision envelope.
    """
    rec = np.asarray(rec, dtype=np.float64)
    prec = np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = float(np.max(prec[rec >= t])) if np.any(rec >= t) else 0.0
            ap += p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


@dataclass
class ClassGT:
    """GT of one class in one image: inclusive boxes ``(N, 4)`` and difficult flags ``(N,)``."""

    boxes: np.ndarray
    difficult: np.ndarray


def eval_class(
    detections: Sequence[tuple[str, float, Sequence[float]]],
    gt: Mapping[str, ClassGT],
    iou_thresh: float = 0.5,
    use_07_metric: bool = False,
) -> dict[str, Any]:
    """AP of one class.

    Args:
        detections: ``(image_id, score, [x0, y0, x1, y1])`` entries (inclusive corners).
        gt: image id -> :class:`ClassGT` for every image of the evaluated set (images without the class may be absent).
        iou_thresh: a hit needs IoU strictly above it.

    Returns:
        ``{"ap": float in [0, 1], "npos": int, "rec": (D,), "prec": (D,)}``; ``ap`` is NaN when the class has no
        non-difficult GT box.
    """
    npos = int(sum(int((~g.difficult).sum()) for g in gt.values()))
    matched = {k: np.zeros(len(g.boxes), dtype=bool) for k, g in gt.items()}
    scores = np.array([float(d[1]) for d in detections], dtype=np.float64)
    order = np.argsort(-scores)
    tp = np.zeros(len(detections))
    fp = np.zeros(len(detections))
    for rank, d in enumerate(order):
        image_id, _, box = detections[d]
        g = gt.get(image_id)
        ovmax, jmax = -np.inf, -1
        if g is not None and len(g.boxes):
            overlaps = iou_plus1(np.asarray(box, dtype=np.float64), g.boxes)
            jmax = int(np.argmax(overlaps))
            ovmax = overlaps[jmax]
        if ovmax > iou_thresh:
            if not g.difficult[jmax]:  # type: ignore[union-attr]
                if not matched[image_id][jmax]:
                    tp[rank] = 1.0
                    matched[image_id][jmax] = True
                else:
                    fp[rank] = 1.0
        else:
            fp[rank] = 1.0
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec = tp / float(npos) if npos else np.zeros_like(tp)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = voc_ap(rec, prec, use_07_metric) if npos else float("nan")
    return {"ap": ap, "npos": npos, "rec": rec, "prec": prec}


@dataclass
class VOCAPEvaluator:
    """Streaming VOC mAP: ``update(...)`` per image, then ``compute()``.

    Args:
        class_names: names of the classes, index = label.
        iou_thresh: IoU threshold (a hit is ``> iou_thresh``).
        use_07_metric: 11-point AP if True, all-point otherwise (recorded in the output).
    """

    class_names: Sequence[str]
    iou_thresh: float = 0.5
    use_07_metric: bool = False
    _gt: dict[int, dict[str, ClassGT]] = field(default_factory=lambda: defaultdict(dict))
    _dets: dict[int, list[tuple[str, float, list[float]]]] = field(default_factory=lambda: defaultdict(list))

    def update(
        self,
        image_id: str,
        pred_boxes: Any,
        pred_scores: Any,
        pred_labels: Any,
        gt_boxes: Any,
        gt_labels: Any,
        gt_difficult: Any | None = None,
    ) -> None:
        """Add one image. Boxes are ``(N, 4)`` inclusive ``x0, y0, x1, y1``; labels index ``class_names``."""
        pb = np.asarray(to_numpy(pred_boxes), dtype=np.float64).reshape(-1, 4)
        gb = np.asarray(to_numpy(gt_boxes), dtype=np.float64).reshape(-1, 4)
        for name, arr in (("prediction", pb), ("ground-truth", gb)):
            bad = np.flatnonzero((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1]) | ~np.isfinite(arr).all(axis=1))
            if bad.size:
                raise ValueError(f"image {image_id}: {name} box {arr[bad[0]].tolist()} has x1 < x0 or y1 < y0")
        gl = np.asarray(to_numpy(gt_labels), dtype=np.int64).reshape(-1)
        pl = np.asarray(to_numpy(pred_labels), dtype=np.int64).reshape(-1)
        ps = np.asarray(to_numpy(pred_scores), dtype=np.float64).reshape(-1)
        diff = np.zeros(len(gl), bool) if gt_difficult is None else np.asarray(to_numpy(gt_difficult), bool).reshape(-1)
        k = len(self.class_names)
        for labels in (gl, pl):
            if labels.size and (labels.min() < 0 or labels.max() >= k):
                raise ValueError(f"image {image_id}: label outside [0, {k})")
        for c in np.unique(gl):
            sel = gl == c
            self._gt[int(c)][image_id] = ClassGT(gb[sel], diff[sel])
        for box, score, c in zip(pb, ps, pl):
            self._dets[int(c)].append((image_id, float(score), box.tolist()))

    def compute(self) -> dict[str, Any]:
        """``{"mAP": percent, "AP": {class: percent or None}, "use_07_metric": bool, "iou_thresh": float}``.

        The mean is over classes with at least one non-difficult GT box.
        """
        per_class: dict[str, float | None] = {}
        for c, name in enumerate(self.class_names):
            res = eval_class(self._dets.get(c, []), self._gt.get(c, {}), self.iou_thresh, self.use_07_metric)
            per_class[name] = None if np.isnan(res["ap"]) else res["ap"] * 100
        valid = [v for v in per_class.values() if v is not None]
        return {
            "mAP": float(np.mean(valid)) if valid else float("nan"),
            "AP": per_class,
            "use_07_metric": self.use_07_metric,
            "iou_thresh": self.iou_thresh,
        }


def read_voc_objects(xml_path: str | Path) -> list[dict[str, Any]]:
    """Objects of a VOC annotation XML: ``[{"name", "difficult": bool, "bbox": [xmin, ymin, xmax, ymax]}]``.

    Coordinates are VOC's 1-based inclusive pixels as floats; a missing ``difficult`` tag means 0.

    Raises:
        ValueError: unparsable XML or an object without name/bndbox (names the file).
    """
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as err:
        raise ValueError(f"{xml_path}: cannot read VOC XML ({err})") from None
    objects = []
    for obj in root.findall("object"):
        name, box = obj.findtext("name"), obj.find("bndbox")
        if name is None or box is None:
            raise ValueError(f"{xml_path}: an <object> lacks <name> or <bndbox>")
        try:
            coords = [float(box.findtext(tag) or "nan") for tag in ("xmin", "ymin", "xmax", "ymax")]
        except ValueError:
            raise ValueError(f"{xml_path}: non-numeric box for object '{name}'") from None
        if not np.isfinite(coords).all():
            raise ValueError(f"{xml_path}: incomplete box for object '{name}'")
        difficult = obj.findtext("difficult")
        objects.append({"name": name.strip(), "difficult": bool(int(difficult or 0)), "bbox": coords})
    return objects
