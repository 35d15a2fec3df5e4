"""DAVIS-2017 semi-supervised J and F, with the semantics of davisvideochallenge/davis2017-evaluation.

* Objects are the ids ``1..N`` of the *first* GT frame; void (255) becomes background in the GT; an object
  missing from a predicted frame is an empty mask. A predicted id above N is an error.
* The first and the last frame are not scored.
* J = |gt & pred| / |gt | pred|, and 1 when the union is empty.
* F: boundaries by ``seg2bmap`` (a pixel differs from its right, lower or lower-right neighbour), matched within
  ``bound_pix = ceil(0.008 * ||(H, W)||)`` by a dilation with scikit-image's ``disk``; precision/recall with the
  official conventions for empty boundaries (both empty gives F = 1).
* Per object: Mean = nanmean, Recall = fraction of frames ``> 0.5``, Decay = mean of the first quarter minus mean
  of the last quarter (bins from ``round(linspace(1, n, 5))``). Global numbers are means over objects, and
  ``J&F-Mean = (J-Mean + F-Mean) / 2``.

Speed: every per-object computation runs on the bounding box of ``gt | pred`` grown by one pixel (boundaries and
their dilations never leave it), with ``cv2.dilate``. Values equal the full-frame computation.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from lowlabel.metrics.wsol import to_numpy
from lowlabel.structures import IGNORE_INDEX

GLOBAL_KEYS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")


def disk(radius: int) -> np.ndarray:
    """scikit-image's ``morphology.disk(radius)``: uint8 ``(2r+1, 2r+1)``, 1 where ``x^2 + y^2 <= r^2``."""
    r = np.arange(-radius, radius + 1)
    return ((r[None, :] ** 2 + r[:, None] ** 2) <= radius**2).astype(np.uint8)


def bound_pixels(shape: tuple[int, int], bound_th: float = 0.008) -> int:
    """Dilation radius: ``bound_th`` itself when ``>= 1``, else ``ceil(bound_th * sqrt(H^2 + W^2))``."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * float(np.linalg.norm(shape))))


def seg2bmap(seg: Any) -> np.ndarray:
    """One-pixel boundary map of a binary mask (davis2017-evaluation ``_seg2bmap``), bool ``(H, W)``."""
    s = to_numpy(seg).astype(bool)
    e = np.zeros_like(s)
    south = np.zeros_like(s)
    se = np.zeros_like(s)
    e[:, :-1] = s[:, 1:]
    south[:-1, :] = s[1:, :]
    se[:-1, :-1] = s[1:, 1:]
    b = (s ^ e) | (s ^ south) | (s ^ se)
    b[-1, :] = s[-1, :] ^ e[-1, :]
    b[:, -1] = s[:, -1] ^ south[:, -1]
    b[-1, -1] = False
    return b


def jaccard(gt: Any, pred: Any) -> float:
    """Region similarity J of two binary masks ``(H, W)``; 1 when both are empty."""
    g, p = to_numpy(gt).astype(bool), to_numpy(pred).astype(bool)
    union = np.count_nonzero(g | p)
    return 1.0 if union == 0 else np.count_nonzero(g & p) / union


def _f_from_boundaries(gt_b: np.ndarray, pred_b: np.ndarray, radius: int) -> float:
    n_fg, n_gt = int(np.count_nonzero(pred_b)), int(np.count_nonzero(gt_b))
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        kernel = disk(radius)
        fg_dil = cv2.dilate(pred_b.view(np.uint8), kernel).view(bool)
        gt_dil = cv2.dilate(gt_b.view(np.uint8), kernel).view(bool)
        precision = np.count_nonzero(pred_b & gt_dil) / n_fg
        recall = np.count_nonzero(gt_b & fg_dil) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def boundary_f(gt: Any, pred: Any, bound_th: float = 0.008) -> float:
    """Contour accuracy F of two binary masks ``(H, W)`` (full frame, no cropping)."""
    g, p = to_numpy(gt).astype(bool), to_numpy(pred).astype(bool)
    return _f_from_boundaries(seg2bmap(g), seg2bmap(p), bound_pixels(g.shape, bound_th))


def _crop(mask: np.ndarray) -> tuple[slice, slice] | None:
    """Bounding box of ``mask`` grown by one pixel on each side (clipped), or None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return slice(max(rows[0] - 1, 0), min(rows[-1] + 2, h)), slice(max(cols[0] - 1, 0), min(cols[-1] + 2, w))


def frame_scores(gt: np.ndarray, pred: np.ndarray, radius: int) -> tuple[float, float]:
    """(J, F) of one object in one frame, on the crop around ``gt | pred`` (same values as full frame).

    The crop keeps one extra row/column: ``seg2bmap`` only looks right and down, so every boundary pixel lies in
    the grown box, and where the crop stops inside the image its last row/column is empty in both masks, where
    the special last-row rule gives the same (empty) answer as the full frame.
    """
    box = _crop(gt | pred)
    if box is None:
        return 1.0, 1.0
    g, p = gt[box], pred[box]
    union = np.count_nonzero(g | p)
    j = np.count_nonzero(g & p) / union
    return j, _f_from_boundaries(seg2bmap(g), seg2bmap(p), radius)


def db_statistics(values: Any) -> tuple[float, float, float]:
    """Mean, recall (fraction ``> 0.5``) and decay (first quarter minus last quarter) of per-frame values."""
    v = np.asarray(values, dtype=np.float64)
    mean = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    recall = float(np.mean(v > 0.5)) if v.size else float("nan")
    # official: ids = round(linspace(1, n, 5) + 1e-10) - 1, bins v[ids[i]:ids[i+1]+1] (it casts ids to uint8,
    # which would wrap above 256 frames; integers here)
    ids = (np.round(np.linspace(1, len(v), 5) + 1e-10) - 1).astype(np.int64)
    first, last = v[ids[0] : ids[1] + 1], v[ids[3] : ids[4] + 1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # nanmean of an all-NaN bin is NaN, as upstream
        decay = float(np.nanmean(first) - np.nanmean(last))
    return mean, recall, decay


def sequence_scores(gt: Any, pred: Any, bound_th: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """Per-object, per-frame J and F of one sequence.

    Args:
        gt: uint8 ``(T, H, W)`` GT object ids for *all* frames (0 background, 255 void, objects ``1..N`` from
            frame 0).
        pred: int ``(T, H, W)`` or ``(T - 2, H, W)`` predicted ids; with T frames the first and last are ignored.

    Returns:
        ``(J, F)``, each float64 ``(N, T - 2)``.

    Raises:
        ValueError: shapes differ, fewer than 3 frames, or a predicted id above N.
    """
    g = to_numpy(gt)
    p = to_numpy(pred)
    if g.ndim != 3 or g.shape[0] < 3:
        raise ValueError(f"gt must be (T >= 3, H, W), got {tuple(g.shape)}")
    if p.shape[0] == g.shape[0]:
        p = p[1:-1]
    if p.shape != (g.shape[0] - 2, *g.shape[1:]):
        raise ValueError(f"prediction shape {tuple(p.shape)} does not match gt {tuple(g.shape)} minus 2 frames")
    g = np.where(g[1:-1] == IGNORE_INDEX, 0, g[1:-1])
    n_obj = int(np.max(np.where(to_numpy(gt)[0] == IGNORE_INDEX, 0, to_numpy(gt)[0])))
    if p.size and int(p.max()) > n_obj:
        raise ValueError(f"prediction has object id {int(p.max())} but the first GT frame has {n_obj} objects")
    radius = bound_pixels(g.shape[1:], bound_th)
    j = np.zeros((n_obj, g.shape[0]))
    f = np.zeros((n_obj, g.shape[0]))
    for t in range(g.shape[0]):
        for k in range(n_obj):
            j[k, t], f[k, t] = frame_scores(g[t] == k + 1, p[t] == k + 1, radius)
    return j, f


@dataclass
class DavisEvaluator:
    """Streaming DAVIS-2017 semi-supervised evaluation: ``update(name, gt, pred)`` per sequence, then ``compute()``.

    Args:
        bound_th: F boundary tolerance (fraction of the diagonal, or pixels when ``>= 1``).
    """

    bound_th: float = 0.008
    per_object: dict[str, dict[str, float]] = field(default_factory=dict)

    def update(self, name: str, gt: Any, pred: Any) -> None:
        """Add one sequence; see :func:`sequence_scores` for shapes. Objects are named ``<name>_<k>``."""
        j, f = sequence_scores(gt, pred, self.bound_th)
        for k in range(j.shape[0]):
            jm, jr, jd = db_statistics(j[k])
            fm, fr, fd = db_statistics(f[k])
            self.per_object[f"{name}_{k + 1}"] = {
                "J-Mean": jm, "J-Recall": jr, "J-Decay": jd, "F-Mean": fm, "F-Recall": fr, "F-Decay": fd,
            }  # fmt: skip

    def compute(self) -> dict[str, float]:
        """Global metrics as fractions in ``[0, 1]`` (as the official CSV): ``J&F-Mean``, ``J-Mean``, ..."""
        if not self.per_object:
            raise ValueError("DavisEvaluator.compute() called before any update()")
        out = {k: float(np.mean([o[k] for o in self.per_object.values()])) for k in GLOBAL_KEYS[1:]}
        return {"J&F-Mean": (out["J-Mean"] + out["F-Mean"]) / 2, **out}

    def global_csv(self) -> str:
        """Text of the official ``global_results-<set>.csv`` (3 decimals)."""
        res = self.compute()
        return ",".join(GLOBAL_KEYS) + "\n" + ",".join(f"{res[k]:.3f}" for k in GLOBAL_KEYS) + "\n"

    def per_sequence_csv(self) -> str:
        """Text of the official ``per-sequence_results-<set>.csv``: ``Sequence,J-Mean,F-Mean``, one row per object."""
        rows = ["Sequence,J-Mean,F-Mean"]
        rows += [f"{n},{o['J-Mean']:.3f},{o['F-Mean']:.3f}" for n, o in self.per_object.items()]
        return "\n".join(rows) + "\n"
