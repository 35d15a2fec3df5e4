"""Semantic-segmentation metrics with chainercv's semantics, as SIPE/IRN evaluate (``eval_cam.py``).

* One confusion matrix over the whole set (not a mean of per-image IoUs).
* GT pixels equal to ``ignore_index`` (255, VOC boundary) are not counted.
* chainercv grows the matrix to the largest label seen and SIPE crops it back to ``K x K``:
  a predicted label ``>= K`` (e.g. a predicted 255) therefore drops out, and so does a GT label ``>= K``.
* ``IoU_c = TP / (GT_c + Pred_c - TP)``; a class absent from both GT and prediction is NaN and skipped by
  ``nanmean``; a class predicted but absent from the GT has IoU 0 and counts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from lowlabel.metrics.wsol import to_numpy
from lowlabel.structures import IGNORE_INDEX


def confusion_matrix(pred: Any, gt: Any, num_classes: int, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Confusion of one prediction (or a batch) with the cropped chainercv semantics.

    Args:
        pred: int ``(..., H, W)`` predicted class indices (values ``>= num_classes`` drop out).
        gt: int ``(..., H, W)`` same shape; ``ignore_index`` pixels (and values ``>= num_classes``) drop out.
        num_classes: K.

    Returns:
        int64 ``(K, K)``, rows = GT class, columns = predicted class.
    """
    p = to_numpy(pred)
    g = to_numpy(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {tuple(p.shape)} differs from ground truth {tuple(g.shape)}")
    p = p.reshape(-1).astype(np.int64)
    g = g.reshape(-1).astype(np.int64)
    if (p < 0).any():
        raise ValueError("prediction contains negative class indices")
    keep = (g >= 0) & (g != ignore_index) & (g < num_classes) & (p < num_classes)
    flat = np.bincount(num_classes * g[keep] + p[keep], minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def iou_from_confusion(confusion: Any) -> np.ndarray:
    """Per-class IoU ``(K,)`` float64 from a ``(K, K)`` confusion; NaN where a class is in neither GT nor prediction."""
    conf = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(conf)
    denominator = conf.sum(axis=1) + conf.sum(axis=0) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return tp / denominator


def miou_from_confusion(confusion: Any) -> float:
    """``nanmean`` of the per-class IoU (NaN when no class was seen at all)."""
    iou = iou_from_confusion(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


class SegEvaluator:
    """Streaming mIoU over a whole set: ``update(pred, gt)`` per image, then ``compute()``.

    Args:
        num_classes: K, including background (21 for VOC).
        ignore_index: GT value that is not scored.
    """

    def __init__(self, num_classes: int = 21, *, ignore_index: int = IGNORE_INDEX) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.count = 0

    def update(self, pred: Any, gt: Any) -> None:
        """Add one image (or a batch): int ``(H, W)`` prediction and GT of the same shape."""
        self.confusion += confusion_matrix(pred, gt, self.num_classes, self.ignore_index)
        self.count += 1

    def compute(self) -> dict[str, Any]:
        """``{"mIoU": percent, "IoU": [percent or None per class]}`` (None for a NaN class)."""
        iou = iou_from_confusion(self.confusion)
        return {
            "mIoU": miou_from_confusion(self.confusion) * 100,
            "IoU": [None if np.isnan(v) else float(v) * 100 for v in iou],
        }


def _present_classes(labels: Any, num_fg: int) -> np.ndarray:
    """0-based foreground class indices from a multi-hot ``(K-1,)`` float/bool vector or an integer index list."""
    arr = to_numpy(labels)
    if arr.dtype.kind in "fb":
        if arr.shape != (num_fg,):
            raise ValueError(f"multi-hot labels must have shape ({num_fg},), got {tuple(arr.shape)}")
        return np.flatnonzero(arr > 0)
    idx = np.asarray(arr, dtype=np.int64).reshape(-1)
    if ((idx < 0) | (idx >= num_fg)).any():
        raise ValueError(f"class indices must be in [0, {num_fg}), got {idx.tolist()}")
    return np.unique(idx)


class BackgroundThresholdSearch:
    """Streaming search of the CAM background threshold that maximises mIoU (IRN/SIPE ``eval_cam.py``).

    For a threshold ``t``, the label map is ``argmax`` over ``[t, cam_c for present classes c]``: background
    wins ties (it is channel 0, as with ``np.pad(..., constant_values=t)`` then ``np.argmax``), i.e. a pixel is
    foreground when ``max_c cam_c > t``. All thresholds are scored in one pass.

    Args:
        num_classes: K including background.
        thresholds: background scores to try (default ``0.05, 0.06, ..., 0.95``).
    """

    def __init__(self, num_classes: int = 21, *, thresholds: Sequence[float] | None = None) -> None:
        self.num_classes = int(num_classes)
        self.thresholds = np.asarray(np.arange(5, 96) / 100 if thresholds is None else thresholds, dtype=np.float64)
        if self.thresholds.ndim != 1 or len(self.thresholds) == 0 or (np.diff(self.thresholds) <= 0).any():
            raise ValueError("thresholds must be a non-empty increasing sequence")
        k, n_t = self.num_classes, len(self.thresholds)
        # counts[g, c, j]: pixels with GT g, best class c, and exactly j thresholds below their best score
        self._counts = np.zeros((k, k, n_t + 1), dtype=np.int64)

    def update(self, cams: Any, gt: Any, labels: Any) -> None:
        """Add one image.

        Args:
            cams: float ``(K-1, H, W)`` foreground CAMs (channels of absent classes are ignored).
            gt: int ``(H, W)`` GT class map, 255 ignored.
            labels: present foreground classes: multi-hot ``(K-1,)`` or 0-based indices.
        """
        cam = to_numpy(cams).astype(np.float64, copy=False)
        g = to_numpy(gt).astype(np.int64)
        k = self.num_classes
        if cam.ndim != 3 or cam.shape[0] != k - 1 or cam.shape[1:] != g.shape:
            raise ValueError(f"cams must be (K-1={k - 1}, H, W) matching gt {tuple(g.shape)}, got {tuple(cam.shape)}")
        if not np.isfinite(cam).all():
            raise ValueError("cams contain NaN or inf")
        present = _present_classes(labels, k - 1)
        if present.size == 0:
            best = np.full(g.shape, -np.inf)
            cls = np.zeros(g.shape, np.int64)
        else:
            sub = cam[present]  # (P, H, W)
            best = sub.max(axis=0)
            cls = present[sub.argmax(axis=0)] + 1
        below = np.searchsorted(self.thresholds, best, side="left")  # number of thresholds t < best
        keep = (g != IGNORE_INDEX) & (g >= 0) & (g < k)
        n_t1 = len(self.thresholds) + 1
        flat = np.bincount((g[keep] * k + cls[keep]) * n_t1 + below[keep], minlength=k * k * n_t1)
        self._counts += flat.reshape(k, k, n_t1)

    def confusions(self) -> np.ndarray:
        """``(T, K, K)`` confusion per threshold."""
        # at threshold index i a pixel keeps its best class iff more than i thresholds lie below its score
        n_t = len(self.thresholds)
        at_least = self._counts[:, :, ::-1].cumsum(axis=2)[:, :, ::-1]  # (K, K, T+1): pixels with below >= j
        as_fg = np.moveaxis(at_least[:, :, 1 : n_t + 1], 2, 0).copy()  # (T, K, K): below > i
        as_fg[:, :, 0] = 0  # best class 0 means "no present class": always background
        total = self._counts.sum(axis=(1, 2))  # (K,) scored pixels per GT class
        as_fg[:, :, 0] = total[None, :] - as_fg.sum(axis=2)
        return as_fg

    def compute(self) -> dict[str, Any]:
        """``{"threshold": best t, "mIoU": best mIoU (percent), "mIoU_per_threshold": [...]}``."""
        mious = [miou_from_confusion(c) * 100 for c in self.confusions()]
        best = int(np.nanargmax(mious))
        return {"threshold": float(self.thresholds[best]), "mIoU": mious[best], "mIoU_per_threshold": mious}


def best_background_threshold(
    cams: Iterable[Any],
    gts: Iterable[Any],
    labels: Iterable[Any],
    thresholds: Sequence[float] | None = None,
    *,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Best CAM background threshold over a set (see :class:`BackgroundThresholdSearch`).

    Args:
        cams: per image, float ``(K-1, H, W)`` foreground CAMs in ``[0, 1]``.
        gts: per image, int ``(H, W)`` GT (255 ignored).
        labels: per image, present classes (multi-hot ``(K-1,)`` or 0-based indices).
        thresholds: background scores to try.
        num_classes: K; default: CAM channels + 1.

    Returns:
        ``{"threshold", "mIoU", "mIoU_per_threshold"}``.
    """
    search: BackgroundThresholdSearch | None = None
    for cam, gt, lab in zip(cams, gts, labels):
        if search is None:
            search = BackgroundThresholdSearch(num_classes or to_numpy(cam).shape[0] + 1, thresholds=thresholds)
        search.update(cam, gt, lab)
    if search is None:
        raise ValueError("best_background_threshold: no image given")
    return search.compute()
