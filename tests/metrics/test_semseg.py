"""Segmentation metrics: chainercv semantics on hand cases and against a naive pixel loop."""

from __future__ import annotations

import numpy as np
import pytest

from lowlabel.metrics import semseg


def naive_confusion(preds: list, gts: list, k: int) -> np.ndarray:
    conf = np.zeros((k, k), dtype=np.int64)
    for p, g in zip(preds, gts):
        for pv, gv in zip(np.ravel(p), np.ravel(g)):
            if gv == 255 or gv >= k or pv >= k:  # chainercv grows the matrix, SIPE crops it to k x k
                continue
            conf[gv, pv] += 1
    return conf


def naive_miou(conf: np.ndarray) -> float:
    ious = []
    for c in range(len(conf)):
        tp = conf[c, c]
        denom = conf[c, :].sum() + conf[:, c].sum() - tp
        if denom > 0:
            ious.append(tp / denom)
    return float(np.mean(ious)) * 100


def test_hand_confusion_ignore_and_predicted_255() -> None:
    gt = np.array([[0, 1], [255, 1]])
    pred = np.array([[0, 1], [1, 255]])
    conf = semseg.confusion_matrix(pred, gt, 3)
    assert conf.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    out = semseg.SegEvaluator(3)
    out.update(pred, gt)
    res = out.compute()
    assert res["mIoU"] == 100.0 and res["IoU"] == [100.0, 100.0, None]  # class 2 absent everywhere: NaN


def test_predicted_but_absent_class_counts_zero() -> None:
    gt = np.zeros((2, 2), np.uint8)
    pred = np.array([[0, 0], [0, 2]])
    ev = semseg.SegEvaluator(3)
    ev.update(pred, gt)
    res = ev.compute()
    # IoU0 = 3 / (4 + 3 - 3) = 0.75; IoU1 NaN; IoU2 = 0 / 1 = 0
    assert res["IoU"] == [75.0, None, 0.0]
    assert res["mIoU"] == pytest.approx(37.5)


def test_one_confusion_over_the_set_not_mean_of_images() -> None:
    ev = semseg.SegEvaluator(2)
    ev.update(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]]))  # perfect image
    ev.update(np.array([[0]]), np.array([[1]]))  # one wrong pixel
    # class 1: tp 4, gt 5, pred 4 -> 4/5; class 0: tp 0, gt 0, pred 1 -> 0
    assert ev.compute()["mIoU"] == pytest.approx((0.8 + 0.0) / 2 * 100)


def test_random_against_naive() -> None:
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 6, (7, 9)) for _ in range(5)]
    gts = [rng.choice([0, 1, 2, 3, 255], (7, 9)) for _ in range(5)]
    preds[0][0, 0] = 255
    ev = semseg.SegEvaluator(5)
    for p, g in zip(preds, gts):
        ev.update(p, g)
    conf = naive_confusion(preds, gts, 5)
    np.testing.assert_array_equal(ev.confusion, conf)
    assert ev.compute()["mIoU"] == pytest.approx(naive_miou(conf))


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        semseg.confusion_matrix(np.zeros((2, 3)), np.zeros((3, 2)), 21)


def naive_labels(cam: np.ndarray, present: list[int], t: float) -> np.ndarray:
    """IRN eval_cam: pad a constant background channel, argmax, map to class ids."""
    padded = np.concatenate([np.full((1, *cam.shape[1:]), t), cam[present]], axis=0)
    keys = np.array([0] + [c + 1 for c in present])
    return keys[np.argmax(padded, axis=0)]


def test_best_background_threshold_matches_naive() -> None:
    rng = np.random.default_rng(1)
    k = 4
    cams, gts, labels = [], [], []
    for _ in range(4):
        cams.append(np.round(rng.random((k - 1, 6, 5)), 2))  # rounding creates ties with thresholds
        gts.append(rng.choice([0, 1, 2, 3, 255], (6, 5)))
        multi_hot = (rng.random(k - 1) > 0.4).astype(np.float32)
        labels.append(multi_hot)
    thresholds = [0.1, 0.25, 0.5, 0.7]
    res = semseg.best_background_threshold(cams, gts, labels, thresholds)
    naive = []
    for t in thresholds:
        preds = [naive_labels(c, list(np.flatnonzero(lab)), t) for c, lab in zip(cams, labels)]
        naive.append(naive_miou(naive_confusion(preds, gts, k)))
    assert res["mIoU_per_threshold"] == pytest.approx(naive)
    assert res["threshold"] == thresholds[int(np.argmax(naive))]
