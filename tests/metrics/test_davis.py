"""DAVIS J&F: hand cases and agreement with a naive full-frame scikit-image implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.morphology import dilation
from skimage.morphology import disk as sk_disk

from lowlabel.metrics import davis


def naive_bmap(seg: np.ndarray) -> np.ndarray:
    h, w = seg.shape
    b = np.zeros_like(seg, dtype=bool)
    for y in range(h):
        for x in range(w):
            right = seg[y, x + 1] if x + 1 < w else False
            down = seg[y + 1, x] if y + 1 < h else False
            diag = seg[y + 1, x + 1] if (x + 1 < w and y + 1 < h) else False
            if y == h - 1 and x == w - 1:
                b[y, x] = False
            elif y == h - 1:
                b[y, x] = seg[y, x] != right
            elif x == w - 1:
                b[y, x] = seg[y, x] != down
            else:
                b[y, x] = seg[y, x] != right or seg[y, x] != down or seg[y, x] != diag
    return b


def naive_f(gt: np.ndarray, pred: np.ndarray, bound_th: float) -> float:
    r = math.ceil(bound_th * math.hypot(*gt.shape))
    gb, pb = naive_bmap(gt), naive_bmap(pred)
    if pb.sum() == 0 or gb.sum() == 0:
        p = 1.0 if pb.sum() == 0 else 0.0
        rc = 1.0 if gb.sum() == 0 else 0.0
    else:
        p = (pb & dilation(gb, sk_disk(r)).astype(bool)).sum() / pb.sum()
        rc = (gb & dilation(pb, sk_disk(r)).astype(bool)).sum() / gb.sum()
    return 0.0 if p + rc == 0 else 2 * p * rc / (p + rc)


def naive_j(gt: np.ndarray, pred: np.ndarray) -> float:
    union = (gt | pred).sum()
    return 1.0 if union == 0 else (gt & pred).sum() / union


def test_disk_equals_skimage() -> None:
    for r in range(0, 12):
        np.testing.assert_array_equal(davis.disk(r), sk_disk(r))
    assert davis.bound_pixels((480, 854)) == 8  # ceil(0.008 * 979.6)


def test_seg2bmap_matches_naive() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        seg = rng.random((9, 11)) > 0.5
        np.testing.assert_array_equal(davis.seg2bmap(seg), naive_bmap(seg))


def random_blobs(rng: np.random.Generator, shape: tuple[int, int], n_obj: int) -> np.ndarray:
    lab = np.zeros(shape, np.uint8)
    for k in range(1, n_obj + 1):
        y, x = rng.integers(0, shape[0] - 5), rng.integers(0, shape[1] - 5)
        lab[y : y + rng.integers(2, 15), x : x + rng.integers(2, 20)] = k
    return lab


def test_sequence_matches_naive() -> None:
    rng = np.random.default_rng(1)
    shape, n_obj, frames = (30, 40), 3, 6
    gt = np.stack([random_blobs(rng, shape, n_obj) for _ in range(frames)])
    gt[0, :2, :2] = 1  # make sure every object exists in frame 0
    gt[0, -2:, -2:] = 2
    gt[0, :2, -2:] = 3
    gt[2, 10:12, 10:14] = 255  # void becomes background
    pred = np.stack([random_blobs(rng, shape, 2) for _ in range(frames)])  # object 3 never predicted
    pred[3] = gt[3]  # one perfect frame
    pred[4] = 0  # one empty frame
    j, f = davis.sequence_scores(gt, pred, bound_th=0.05)
    for t in range(1, frames - 1):
        g = np.where(gt[t] == 255, 0, gt[t])
        for k in range(n_obj):
            assert j[k, t - 1] == pytest.approx(naive_j(g == k + 1, pred[t] == k + 1))
            assert f[k, t - 1] == pytest.approx(naive_f(g == k + 1, pred[t] == k + 1, 0.05))


def test_hand_cases() -> None:
    gt = np.zeros((3, 8, 8), np.uint8)
    gt[:, 0:2, 0:2] = 1  # object 1: 4 pixels
    gt[:, 0:2, 2:4] = 255  # void next to it
    gt[0, 6, 6] = 2  # object 2 only in frame 0 (absent later: empty union -> J = F = 1)
    pred = np.zeros_like(gt)
    pred[1, 0:2, 0:4] = 1  # covers object + void: void is background -> J = 4 / 8
    j, f = davis.sequence_scores(gt, pred)
    assert j[:, 0].tolist() == [0.5, 1.0] and f[1, 0] == 1.0
    # a missing object: empty prediction against a non-empty GT -> J = 0 and F = 0 (precision 1, recall 0)
    j, f = davis.sequence_scores(gt, np.zeros_like(gt))
    assert j[0, 0] == 0.0 and f[0, 0] == 0.0


def test_statistics_and_first_last_frames_ignored() -> None:
    frames = 10
    gt = np.zeros((frames, 20, 20), np.uint8)
    gt[:, 5:15, 5:15] = 1
    pred = gt.copy()
    pred[0] = 0  # first and last frames are not scored
    pred[-1] = 0
    pred[6:9] = 0  # scored frames 5, 6, 7 (0-based among the 8 scored) are empty
    ev = davis.DavisEvaluator()
    ev.update("seq", gt, pred)
    out = ev.compute()
    # per-frame J = [1, 1, 1, 1, 1, 0, 0, 0]; decay bins from round(linspace(1, 8, 5)) - 1 = [0, 2, 3, 5, 7]
    assert out["J-Mean"] == pytest.approx(5 / 8) and out["J-Recall"] == pytest.approx(5 / 8)
    assert out["J-Decay"] == pytest.approx(1.0) and out["F-Decay"] == pytest.approx(1.0)
    assert out["J&F-Mean"] == pytest.approx(5 / 8)
    assert ev.per_sequence_csv().splitlines() == ["Sequence,J-Mean,F-Mean", "seq_1,0.625,0.625"]
    assert ev.global_csv().splitlines()[0] == "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay"


def test_recall_is_strict() -> None:
    mean, recall, _ = davis.db_statistics([0.5, 0.5, 0.6, 0.4])
    assert recall == 0.25 and mean == pytest.approx(0.5)


def test_bad_prediction_ids() -> None:
    gt = np.zeros((3, 4, 4), np.uint8)
    gt[0, 0, 0] = 1
    with pytest.raises(ValueError, match="object id 2"):
        davis.sequence_scores(gt, np.full_like(gt, 2))
