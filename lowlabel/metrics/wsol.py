"""WSOL metrics with the exact conventions of clovaai/wsolevaluation (``evaluation.py``).

Conventions reproduced on purpose (DESIGN.md section 5):

* score maps are ``float`` arrays ``(224, 224)`` in ``[0, 1]``; they are quantised with
  ``(scoremap * 255).astype(uint8)`` (truncation) and a pixel is foreground at CAM threshold ``t``
  when ``u8 > int(t * u8.max())`` (``cv2.threshold(..., THRESH_BINARY)``);
* boxes come from ``cv2.findContours(RETR_TREE, CHAIN_APPROX_SIMPLE)``; ``boundingRect`` gives
  ``(x, y, w, h)`` and the box is ``(x, y, x + w, y + h)`` with ``x + w`` used as an *inclusive*
  corner, clipped to ``width - 1``/``height - 1``. V1 keeps the contour of largest
  ``cv2.contourArea`` (the first one on ties), V2 keeps every contour (outer borders and holes);
  no contour gives the box ``(0, 0, 0, 0)``;
* GT boxes are rescaled to the 224 grid by truncation ``int(x * 224 / W)``;
* IoU uses inclusive corners (``+1``); a degenerate union gives IoU 0; a hit is ``IoU >= delta``;
* CAM thresholds are ``np.arange(0, 1, interval)``; MaxBoxAcc is the max over them;
* PxAP: score histograms over bins ``thresholds + [1, 2, 3]``, cumulative precision/recall.

Speed: instead of one ``findContours`` call per CAM threshold, each image is processed once for all
thresholds by two union-find passes over its pixels sorted by value (:mod:`lowlabel.metrics.wsol_tree`,
compiled with numba), which yield the same boxes and V1 choices; the few levels they leave open are given
to ``findContours``. Boxes and IoUs are vectorised. The numbers are identical to the per-threshold loop
(``tests/metrics/test_wsol.py`` and ``tests/metrics/test_wsol_tree.py`` check it).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

RESIZE_LENGTH = 224


def to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` (numpy array, torch tensor, list) as a numpy array without copying when possible."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def cam_thresholds(interval: float) -> np.ndarray:
    """The CAM thresholds of wsolevaluation, ``np.arange(0, 1, interval)`` (float64)."""
    if not 0 < interval < 1:
        raise ValueError(f"cam_curve_interval must be in (0, 1), got {interval}")
    return np.arange(0, 1, interval)


def normalize_scoremap(cam: Any) -> np.ndarray:
    """Min-max normalise a CAM to ``[0, 1]`` as wsolevaluation's ``normalize_scoremap`` does.

    Args:
        cam: float array ``(H, W)`` (numpy or torch).

    Returns:
        float32 array ``(H, W)``; all zeros when the map contains NaN or is constant.
    """
    cam = to_numpy(cam).astype(np.float32, copy=True)
    if np.isnan(cam).any() or cam.min() == cam.max():
        return np.zeros_like(cam)
    cam -= cam.min()
    cam /= cam.max()
    return cam


def check_scoremap(scoremap: Any, shape: tuple[int, int] | None = None, where: str = "scoremap") -> np.ndarray:
    """Validate a score map and return it as a float numpy array.

    Raises:
        ValueError: not 2-D, not of ``shape`` (H, W) when given, NaN/inf, or values outside ``[0, 1]``.
    """
    arr = to_numpy(scoremap)
    if arr.ndim != 2:
        raise ValueError(f"{where}: score map must be 2-D (H, W), got shape {tuple(arr.shape)}")
    if shape is not None and tuple(arr.shape) != tuple(shape):
        raise ValueError(f"{where}: score map has shape {tuple(arr.shape)}, expected {tuple(shape)}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{where}: score map must be float, got {arr.dtype}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: score map contains NaN or inf")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{where}: score map values must be in [0, 1], got [{arr.min()}, {arr.max()}]")
    return arr


def resize_boxes(boxes: Any, image_size: tuple[int, int], resize_size: tuple[int, int] = (224, 224)) -> np.ndarray:
    """Rescale inclusive-corner boxes from the original image to the score-map grid, by truncation.

    Args:
        boxes: ``(N, 4)`` ``x0, y0, x1, y1`` in original pixels (``x1 >= x0``).
        image_size: original ``(W, H)``.
        resize_size: target ``(W, H)``, 224x224 in wsolevaluation.

    Returns:
        int64 ``(N, 4)``: ``int(x * new_w / W)`` etc., exactly wsolevaluation's ``resize_bbox``.
    """
    arr = np.asarray(to_numpy(boxes), dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(arr).all():
        raise ValueError("boxes: non-finite coordinate")
    bad = np.flatnonzero((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1]))
    if bad.size:
        raise ValueError(f"boxes: box {bad[0]} has x1 < x0 or y1 < y0: {arr[bad[0]].tolist()}")
    w, h = (float(v) for v in image_size)
    nw, nh = (float(v) for v in resize_size)
    if w <= 0 or h <= 0:
        raise ValueError(f"image_size must be positive (W, H), got {image_size}")
    # x * new_w / W in this order, as resize_bbox computes it, then int() truncation.
    out = np.stack([arr[:, 0] * nw / w, arr[:, 1] * nh / h, arr[:, 2] * nw / w, arr[:, 3] * nh / h], axis=1)
    return np.trunc(out).astype(np.int64)


def box_iou_inclusive(box_a: Any, box_b: Any) -> np.ndarray:
    """IoU matrix of inclusive-corner integer boxes (``+1`` on widths), wsolevaluation's ``calculate_multiple_iou``.

    Args:
        box_a: ``(A, 4)`` ``x0, y0, x1, y1``.
        box_b: ``(B, 4)``.

    Returns:
        float64 ``(A, B)``; pairs whose union is ``<= 0`` get 0.
    """
    a = np.asarray(box_a, dtype=np.int64).reshape(-1, 4)[:, None, :]  # (A, 1, 4)
    b = np.asarray(box_b, dtype=np.int64).reshape(-1, 4)[None, :, :]  # (1, B, 4)
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    degenerate = union <= 0
    iou = inter / np.where(degenerate, 1, union)
    iou[degenerate] = 0.0
    return iou


def quantize(scoremap: np.ndarray) -> np.ndarray:
    """``(scoremap * 255).astype(uint8)`` as wsolevaluation does (truncation)."""
    return (scoremap * 255).astype(np.uint8)


def threshold_levels(u8: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group CAM thresholds by the binary mask they produce.

    Args:
        u8: quantised score map ``(H, W)`` uint8.
        thresholds: ``(T,)`` CAM thresholds in ``[0, 1)``.

    Returns:
        ``levels`` (L,) int: one uint8 cut per distinct mask (foreground is ``u8 > level``), ascending;
        ``index`` (T,) int: which level each threshold uses.
    """
    cuts = (np.asarray(thresholds, dtype=np.float64) * u8.max()).astype(np.int64)  # int(t * max), t >= 0
    values = np.flatnonzero(np.bincount(u8.ravel(), minlength=256))  # distinct values present, ascending
    # masks u8 > k are equal for all k with the same number of distinct values <= k
    key = np.searchsorted(values, cuts, side="right")
    _, first, index = np.unique(key, return_index=True, return_inverse=True)
    return cuts[first], index.reshape(-1)


def _crop_boxes(u8: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per level, the bounding box ``(y0, y1, x0, x1)`` (exclusive ends) of ``u8 > level``; all zero when empty."""
    out = np.zeros((len(levels), 4), dtype=np.int64)
    for axis, col in ((1, 0), (0, 2)):
        line = u8.max(axis=axis)  # (H,) row maxima, then (W,) column maxima
        above = line[None, :] > levels[:, None]  # (L, n)
        any_above = above.any(axis=1)
        out[:, col] = np.where(any_above, above.argmax(axis=1), 0)
        out[:, col + 1] = np.where(any_above, len(line) - above[:, ::-1].argmax(axis=1), 0)
    return out


def _level_contours(u8: np.ndarray, levels: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Contours of ``u8 > level`` for every level, computed on the foreground's bounding box.

    The crop has the same contours in the same order as the full map: every background pixel outside
    the box is connected to the image border, and ``findContours`` pads the image with zeros anyway.

    Returns:
        all contours, level after level, and the number of contours per level ``(L,)``.
    """
    crops = _crop_boxes(u8, levels)
    contours: list[np.ndarray] = []
    counts: list[int] = []
    find, thresh, binary_mode = cv2.findContours, cv2.threshold, cv2.THRESH_BINARY
    tree, simple = cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE
    for level, (y0, y1, x0, x1) in zip(levels.tolist(), crops.tolist()):
        if y1 == 0:
            counts.append(0)
            continue
        found = find(thresh(u8[y0:y1, x0:x1], level, 255, binary_mode)[1], tree, simple, offset=(x0, y0))[0]
        counts.append(len(found))
        contours.extend(found)
    return contours, np.array(counts, dtype=np.int64)


def _contour_boxes_and_areas(contours: list[np.ndarray], width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(n, 4)`` (``x + w`` inclusive, clipped) and twice the ``cv2.contourArea`` ``(n,)`` of each contour."""
    lengths = np.array(list(map(len, contours)), dtype=np.int64)
    pts = np.concatenate(contours).reshape(-1, 2)  # (P, 2) int32 x, y (products fit for sides < 46340)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    x, y = pts[:, 0], pts[:, 1]
    boxes = np.stack(
        [
            np.minimum.reduceat(x, starts),
            np.minimum.reduceat(y, starts),
            np.minimum(np.maximum.reduceat(x, starts) + 1, width - 1),
            np.minimum(np.maximum.reduceat(y, starts) + 1, height - 1),
        ],
        axis=1,
    )
    # shoelace (what cv2.contourArea computes), exact in integers so ties match cv2's doubles
    nxt = np.arange(1, len(pts) + 1)
    nxt[ends - 1] = starts
    area2 = np.abs(np.add.reduceat(x * y[nxt] - x[nxt] * y, starts))
    return boxes, area2


def _first_largest(boxes: np.ndarray, area2: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per level with contours, the box of the first contour of largest ``contourArea`` ``(L_nonempty, 4)``,
    from the contours' boxes and doubled areas (:func:`_contour_boxes_and_areas`) and the contours per level."""
    has = counts > 0
    starts = (np.cumsum(counts) - counts)[has]
    level_max = np.maximum.reduceat(area2, starts)  # (L_nonempty,)
    is_max = area2 == np.repeat(level_max, counts[has])
    first = np.minimum.reduceat(np.where(is_max, np.arange(len(area2)), len(area2)), starts)
    return boxes[first]


def level_boxes(u8: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes of the contours of the binary masks ``u8 > level`` for each level.

    The boxes come from component trees (:mod:`lowlabel.metrics.wsol_tree`), which give the same box sets
    and V1 choices as ``findContours``. The rare levels the trees leave open (a component inside a hole,
    or a V1 tie that depends on ``findContours``'s contour order) are computed by ``findContours``.

    Args:
        u8: quantised score map ``(H, W)`` uint8.
        levels: ``(L,)`` distinct int cuts.

    Returns:
        ``all_boxes`` (M, 4) int64, every contour's box for every level, level by level;
        ``offsets`` (L + 1,) int: level ``i`` owns ``all_boxes[offsets[i]:offsets[i + 1]]`` (at least one box,
        ``(0, 0, 0, 0)`` when the mask is empty);
        ``largest`` (L, 4) int64: the V1 box (first contour of largest area) per level.
    """
    from lowlabel.metrics.wsol_tree import group_by_level, tree_level_boxes

    height, width = u8.shape
    levels = np.asarray(levels, dtype=np.int64)
    rows, largest, needs_order, nested = tree_level_boxes(u8, levels)
    redo = np.flatnonzero(needs_order | nested)
    if redo.size:
        contours, counts = _level_contours(u8, levels[redo])
        if contours:
            found, area2 = _contour_boxes_and_areas(contours, width, height)
            largest[redo[counts > 0]] = _first_largest(found, area2, counts)
        if nested.any():
            rows[nested[rows[:, 4]], 4] = -1  # replaced by findContours's boxes
            from_contours = np.repeat(nested[redo], counts)
            if from_contours.any():
                found_level = np.repeat(redo, counts)[from_contours]
                rows = np.concatenate([rows, np.column_stack([found[from_contours], found_level])])
    all_boxes, offsets = group_by_level(rows, len(levels))
    return all_boxes, offsets, largest


def contour_level_boxes(u8: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`level_boxes` from ``findContours`` on every level (the slower path, kept as a cross-check)."""
    height, width = u8.shape
    n_levels = len(levels)
    contours, counts = _level_contours(u8, np.asarray(levels, dtype=np.int64))
    largest = np.zeros((n_levels, 4), dtype=np.int64)
    sizes = np.maximum(counts, 1)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    all_boxes = np.zeros((int(offsets[-1]), 4), dtype=np.int64)
    if not contours:
        return all_boxes, offsets, largest
    boxes, area2 = _contour_boxes_and_areas(contours, width, height)
    contour_level = np.repeat(np.arange(n_levels), counts)
    rank = np.arange(len(contours)) - np.repeat(np.cumsum(counts) - counts, counts)
    all_boxes[offsets[contour_level] + rank] = boxes
    largest[counts > 0] = _first_largest(boxes, area2, counts)
    return all_boxes, offsets, largest


def boxes_from_scoremap(scoremap: Any, thresholds: Any, multi_contour: bool = True) -> list[np.ndarray]:
    """Boxes estimated from a score map at each CAM threshold (wsolevaluation ``compute_bboxes_from_scoremaps``).

    Args:
        scoremap: float ``(H, W)`` in ``[0, 1]``.
        thresholds: ``(T,)`` CAM thresholds, usually ``np.arange(0, 1, interval)``.
        multi_contour: V2 (one box per contour) if True, else V1 (the largest contour only).

    Returns:
        list of T int64 arrays ``(n_t, 4)``, inclusive ``x0, y0, x1, y1`` on the score-map grid;
        ``[[0, 0, 0, 0]]`` where nothing is above the threshold. With ``multi_contour`` the boxes are those
        of ``findContours``'s contours, in another order.
    """
    u8 = quantize(check_scoremap(scoremap))
    levels, index = threshold_levels(u8, np.asarray(thresholds))
    all_boxes, offsets, largest = level_boxes(u8, levels)
    if multi_contour:
        per_level = [all_boxes[offsets[i] : offsets[i + 1]] for i in range(len(levels))]
    else:
        per_level = [largest[i : i + 1] for i in range(len(levels))]
    return [per_level[i].copy() for i in index]


def best_iou_per_threshold(
    scoremap: np.ndarray, gt_boxes: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Best IoU with any GT box, per CAM threshold, for V1 and V2 boxes.

    Args:
        scoremap: float ``(H, W)`` in ``[0, 1]`` (validated by the caller).
        gt_boxes: int ``(G, 4)`` on the score-map grid, G >= 1.
        thresholds: ``(T,)``.

    Returns:
        ``(iou_v1, iou_v2)``, each float64 ``(T,)``.
    """
    u8 = quantize(scoremap)
    levels, index = threshold_levels(u8, thresholds)
    all_boxes, offsets, largest = level_boxes(u8, levels)
    iou_all = box_iou_inclusive(all_boxes, gt_boxes).max(axis=1)  # (M,)
    v2 = np.maximum.reduceat(iou_all, offsets[:-1])  # (L,)
    v1 = box_iou_inclusive(largest, gt_boxes).max(axis=1)  # (L,)
    return v1[index], v2[index]


class BoxEvaluator:
    """Streaming MaxBoxAcc (V1 and V2), GT-known Loc, Top-1 Loc and Top-1 Cls.

    Example::

        ev = BoxEvaluator(cam_curve_interval=0.01, iou_thresholds=(30, 50, 70))
        for cam, boxes, (w, h), pred, label in data:
            ev.update(normalize_scoremap(cam224), boxes, (w, h), pred_class=pred, gt_class=label)
        ev.compute()  # {"MaxBoxAccV2": ..., "MaxBoxAccV2@30": ..., "GT-known Loc": ..., ...}

    Args:
        cam_curve_interval: CAM thresholds are ``np.arange(0, 1, cam_curve_interval)``.
        iou_thresholds: IoU thresholds in percent (a hit is ``IoU >= t / 100``).
        multi_contour: which box set ``MaxBoxAcc`` (wsolevaluation's single number) and
            :meth:`per_image_best_iou` use: V2 (every contour) if True, V1 (largest contour) if False.
            ``MaxBoxAccV1*`` and ``MaxBoxAccV2*`` keys are always both reported.
        resize_length: side of the square score-map grid; GT boxes are rescaled to it (224 as in wsolevaluation).
        keep_per_image: keep each image's IoU at every CAM threshold (4 bytes x thresholds per image) for
            :meth:`per_image_best_iou`; turn off for very large sets (ImageNet val at interval 0.001: 200 MB).
    """

    def __init__(
        self,
        *,
        cam_curve_interval: float = 0.01,
        iou_thresholds: tuple[int, ...] | list[int] = (30, 50, 70),
        multi_contour: bool = True,
        resize_length: int = RESIZE_LENGTH,
        keep_per_image: bool = True,
    ) -> None:
        self.thresholds = cam_thresholds(cam_curve_interval)
        self.iou_thresholds = [int(t) for t in iou_thresholds]
        if not self.iou_thresholds or any(not 0 < t <= 100 for t in self.iou_thresholds):
            raise ValueError(f"iou_thresholds must be percentages in (0, 100], got {list(iou_thresholds)}")
        self.multi_contour = multi_contour
        self.resize_length = int(resize_length)
        self.keep_per_image = keep_per_image
        n_t, n_i = len(self.thresholds), len(self.iou_thresholds)
        self._hits = {"V1": np.zeros((n_i, n_t), np.int64), "V2": np.zeros((n_i, n_t), np.int64)}
        self._gt_known_hits = np.zeros(n_t, np.int64)  # V1 hit at IoU 50
        self._top1_hits = np.zeros(n_t, np.int64)  # V1 hit at IoU 50 and correct class
        self._ious: list[np.ndarray] = []  # per image (T,) float32, box set chosen by multi_contour
        self.count = 0
        self._n_cls = 0
        self._n_cls_correct = 0

    def update(
        self,
        scoremap: Any,
        gt_boxes: Any,
        image_size: tuple[int, int],
        pred_class: int | None = None,
        gt_class: int | None = None,
    ) -> None:
        """Add one image.

        Args:
            scoremap: float ``(224, 224)`` in ``[0, 1]`` (see :func:`normalize_scoremap`).
            gt_boxes: ``(N, 4)`` inclusive ``x0, y0, x1, y1`` in *original* image pixels, N >= 1.
            image_size: original ``(W, H)``.
            pred_class: predicted class (for Top-1 Loc/Cls); give it for all images or none.
            gt_class: ground-truth class, required with ``pred_class``.
        """
        side = self.resize_length
        cam = check_scoremap(scoremap, (side, side), where=f"image {self.count}")
        boxes = resize_boxes(gt_boxes, image_size, (side, side))
        if len(boxes) == 0:
            raise ValueError(f"image {self.count}: no ground-truth box")
        if (pred_class is None) != (gt_class is None):
            raise ValueError("give both pred_class and gt_class, or neither")
        if pred_class is not None and self.count != self._n_cls:
            raise ValueError("pred_class must be given for every image or for none")
        iou_v1, iou_v2 = best_iou_per_threshold(cam, boxes, self.thresholds)
        for i, t in enumerate(self.iou_thresholds):
            self._hits["V1"][i] += iou_v1 >= t / 100
            self._hits["V2"][i] += iou_v2 >= t / 100
        self._gt_known_hits += iou_v1 >= 0.5
        if pred_class is not None:
            correct = int(pred_class) == int(gt_class)  # type: ignore[arg-type]
            self._n_cls += 1
            self._n_cls_correct += correct
            if correct:
                self._top1_hits += iou_v1 >= 0.5
        elif self._n_cls:
            raise ValueError("pred_class must be given for every image or for none")
        if self.keep_per_image:
            self._ious.append((iou_v2 if self.multi_contour else iou_v1).astype(np.float32))
        self.count += 1

    def box_accuracy(self, version: str = "V2") -> np.ndarray:
        """BoxAcc in percent, float64 ``(len(iou_thresholds), T)``: rows are IoU thresholds, columns CAM thresholds."""
        if self.count == 0:
            raise ValueError("BoxEvaluator.compute() called before any update()")
        return self._hits[version] * 100.0 / self.count

    def compute(self) -> dict[str, float]:
        """Metrics in percent: ``MaxBoxAccV{1,2}`` (mean over IoU thresholds), ``MaxBoxAccV{1,2}@t``, ``MaxBoxAcc``,
        ``GT-known Loc`` (V1 at IoU 50), and, when classes were given, ``Top-1 Loc`` and ``Top-1 Cls``.
        """
        out: dict[str, float] = {}
        for version in ("V2", "V1"):
            best = self.box_accuracy(version).max(axis=1)
            out[f"MaxBoxAcc{version}"] = float(best.mean())
            for t, v in zip(self.iou_thresholds, best):
                out[f"MaxBoxAcc{version}@{t}"] = float(v)
        out["MaxBoxAcc"] = out["MaxBoxAccV2" if self.multi_contour else "MaxBoxAccV1"]
        out["GT-known Loc"] = float(self._gt_known_hits.max() * 100.0 / self.count)
        if self._n_cls:
            out["Top-1 Loc"] = float(self._top1_hits.max() * 100.0 / self.count)
            out["Top-1 Cls"] = self._n_cls_correct * 100.0 / self._n_cls
        return out

    def best_threshold(self) -> float:
        """The CAM threshold maximising BoxAcc at IoU 50 (or the middle IoU threshold) for the chosen box set."""
        version = "V2" if self.multi_contour else "V1"
        row = self.iou_thresholds.index(50) if 50 in self.iou_thresholds else len(self.iou_thresholds) // 2
        return float(self.thresholds[int(np.argmax(self._hits[version][row]))])

    def per_image_best_iou(self) -> np.ndarray:
        """Per image, float ``(count,)``: the IoU of its box at :meth:`best_threshold` (V2 best box or V1 box)."""
        if self.count == 0:
            return np.zeros(0, np.float32)
        if not self.keep_per_image:
            raise ValueError("per_image_best_iou() needs BoxEvaluator(keep_per_image=True)")
        version = "V2" if self.multi_contour else "V1"
        row = self.iou_thresholds.index(50) if 50 in self.iou_thresholds else len(self.iou_thresholds) // 2
        col = int(np.argmax(self._hits[version][row]))
        return np.array([iou[col] for iou in self._ious], dtype=np.float32)


def combine_masks(instance_masks: Any, ignore_mask: Any | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Merge instance masks and an ignore box mask the way wsolevaluation's ``get_mask`` does.

    Args:
        instance_masks: ``(N, H, W)`` or ``(H, W)`` arrays; a pixel is foreground where any is ``> 0.5``.
        ignore_mask: ``(H, W)`` or None; ignored pixels are ``ignore > 0.5`` minus the foreground.

    Returns:
        ``(gt_mask, ignore)``, both bool ``(H, W)``.
    """
    masks = to_numpy(instance_masks)
    fg = (masks > 0.5) if masks.ndim == 2 else (masks > 0.5).any(axis=0)
    if ignore_mask is None:
        return fg, np.zeros_like(fg)
    ignore = (to_numpy(ignore_mask) > 0.5) & ~fg
    return fg, ignore


class MaskEvaluator:
    """Streaming PxAP (pixel average precision), wsolevaluation's ``MaskEvaluator``.

    Args:
        cam_curve_interval: histogram bins are ``np.arange(0, 1, interval)`` followed by ``[1, 2, 3]``
            (bins ``[0, bw), ..., [1 - bw, 1), [1, 2), [2, 3]``).
    """

    def __init__(self, *, cam_curve_interval: float = 0.01) -> None:
        self.thresholds = cam_thresholds(cam_curve_interval)
        self.edges = np.append(self.thresholds, [1.0, 2.0, 3.0])
        self.num_bins = len(self.edges) - 1
        self.gt_true_hist = np.zeros(self.num_bins, dtype=np.float64)
        self.gt_false_hist = np.zeros(self.num_bins, dtype=np.float64)
        self.count = 0

    def _hist(self, values: np.ndarray) -> np.ndarray:
        # same counts as np.histogram(values, bins=self.edges) for values in [0, 1]
        idx = np.searchsorted(self.edges, values, side="right") - 1
        return np.bincount(idx, minlength=self.num_bins)[: self.num_bins].astype(np.float64)

    def update(self, scoremap: Any, gt_mask: Any, ignore_mask: Any | None = None) -> None:
        """Add one image.

        Args:
            scoremap: float ``(H, W)`` in ``[0, 1]``.
            gt_mask: ``(H, W)`` bool/uint8, nonzero = foreground (use :func:`combine_masks` for instances).
            ignore_mask: ``(H, W)`` bool/uint8 or None; nonzero pixels outside the foreground are not scored.
        """
        cam = check_scoremap(scoremap, where=f"image {self.count}")
        fg = to_numpy(gt_mask).astype(bool)
        if fg.shape != cam.shape:
            raise ValueError(f"image {self.count}: mask shape {fg.shape} differs from score map {cam.shape}")
        negative = ~fg
        if ignore_mask is not None:
            ignore = to_numpy(ignore_mask).astype(bool)
            if ignore.shape != cam.shape:
                raise ValueError(f"image {self.count}: ignore shape {ignore.shape} differs from score map {cam.shape}")
            negative &= ~ignore
        self.gt_true_hist += self._hist(cam[fg])
        self.gt_false_hist += self._hist(cam[negative])
        self.count += 1

    def compute(self) -> dict[str, float]:
        """``{"PxAP": area under the pixel precision-recall curve, in percent}``.

        Raises:
            ValueError: no positive GT pixel, or no pixel at all, was seen.
        """
        tp = self.gt_true_hist[::-1].cumsum()  # thresholds from high to low
        fn = self.gt_true_hist.sum() - tp
        fp = self.gt_false_hist[::-1].cumsum()
        if ((tp + fn) <= 0).all():
            raise ValueError("PxAP: no positive ground-truth pixel in the evaluated set")
        if ((tp + fp) <= 0).all():
            raise ValueError("PxAP: no scored pixel in the evaluated set")
        nonzero = (tp + fp) != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = tp / (tp + fp)
            recall = tp / (tp + fn)
        auc = (precision[1:] * np.diff(recall))[nonzero[1:]].sum() * 100
        return {"PxAP": float(auc)}
