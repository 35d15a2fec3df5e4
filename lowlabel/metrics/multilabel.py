"""Multi-label image classification scores: average precision per class and its mean (mAP).

AP follows scikit-learn's ``average_precision_score`` (the non-interpolated PASCAL VOC 2010+ form, ranked by score):
``AP = sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds in decreasing order, where ``P_n`` and ``R_n``
are the precision and recall of everything scoring at least the n-th threshold; tied scores enter together.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def average_precision(scores: Any, labels: Any) -> float:
    """AP of one class.

    Args:
        scores: (N,) float, higher = more likely positive; finite.
        labels: (N,) bool or {0, 1}, True on the positives.

    Returns:
        AP in [0, 1]; NaN when there is no positive (AP is undefined).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"scores {s.shape} and labels {y.shape} must have one length")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    positives = int(y.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each run of tied scores
    tp = np.cumsum(y)[last]  # (thresholds,) positives scoring >= the threshold
    precision = tp / (last + 1)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(scores: Any, labels: Any) -> tuple[float, list[float]]:
    """mAP over classes and the AP of each class.

    Args:
        scores: (N, C) float.
        labels: (N, C) bool multi-hot.

    Returns:
        (mean of the defined APs, NaN when none is; the (C,) APs, NaN for classes without a positive).
    """
    s, y = np.asarray(scores), np.asarray(labels)
    if s.ndim != 2 or s.shape != y.shape:
        raise ValueError(f"need (N, C) scores and labels of one shape, got {s.shape} and {y.shape}")
    aps = [average_precision(s[:, c], y[:, c]) for c in range(s.shape[1])]
    valid = [ap for ap in aps if not np.isnan(ap)]
    return (float(np.mean(valid)) if valid else float("nan")), aps
