"""WSOL metrics: hand-derived cases and agreement with a naive per-threshold contour loop."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lowlabel.metrics import wsol

S = 224


def naive_boxes(scoremap: np.ndarray, thresholds: np.ndarray, multi: bool) -> list[np.ndarray]:
    """The per-threshold loop as wsolevaluation describes it, written independently for the test."""
    h, w = scoremap.shape
    img = (scoremap * 255).astype(np.uint8)
    out = []
    for t in thresholds:
        _, binary = cv2.threshold(img, int(t * img.max()), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            out.append(np.array([[0, 0, 0, 0]]))
            continue
        if not multi:
            contours = [max(contours, key=cv2.contourArea)]
        boxes = []
        for c in contours:
            x, y, bw, bh = cv2.boundingRect(c)
            boxes.append([x, y, min(x + bw, w - 1), min(y + bh, h - 1)])
        out.append(np.array(boxes))
    return out


def naive_iou(a: list[int], b: list[int]) -> float:
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = iw * ih
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return inter / union if union > 0 else 0.0


def random_cams(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    cams = []
    for i in range(n):
        side = int(rng.choice([3, 7, 14, 28]))
        small = rng.random((side, side)).astype(np.float32)
        interp = [cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST][i % 3]
        cams.append(wsol.normalize_scoremap(cv2.resize(small, (S, S), interpolation=interp)))
    cams.append((rng.random((S, S)) > 0.6).astype(np.float32) * 0.7)  # many contours and holes
    cams.append(np.full((S, S), 0.3, np.float32))
    return cams


@pytest.mark.parametrize("multi", [True, False])
def test_boxes_match_naive_loop(multi: bool) -> None:
    thresholds = np.arange(0, 1, 0.02)
    for cam in random_cams(12, seed=int(multi)):
        fast = wsol.boxes_from_scoremap(cam, thresholds, multi_contour=multi)
        slow = naive_boxes(cam, thresholds, multi)
        assert len(fast) == len(slow)
        for a, b in zip(fast, slow):
            if multi:  # V2 is a set of boxes (the best IoU over them); their order is not findContours's
                a, b = np.unique(a, axis=0), np.unique(b, axis=0)
            np.testing.assert_array_equal(a, b)


def test_evaluator_matches_naive_accuracy() -> None:
    rng = np.random.default_rng(3)
    thresholds = np.arange(0, 1, 0.05)
    ev = wsol.BoxEvaluator(cam_curve_interval=0.05, iou_thresholds=(30, 50, 70))
    hits = {v: np.zeros((3, len(thresholds))) for v in ("V1", "V2")}
    cams = random_cams(6, seed=7)
    for cam in cams:
        gt = [[int(rng.integers(0, 100)), int(rng.integers(0, 100)), int(rng.integers(110, 224)), 200]]
        ev.update(cam, gt, (S, S))
        for version, multi in (("V1", False), ("V2", True)):
            for j, boxes in enumerate(naive_boxes(cam, thresholds, multi)):
                best = max(naive_iou(list(b), g) for b in boxes for g in gt)
                for i, t in enumerate((30, 50, 70)):
                    hits[version][i, j] += best >= t / 100
    out = ev.compute()
    for version in ("V1", "V2"):
        best = (hits[version] * 100 / len(cams)).max(axis=1)
        assert out[f"MaxBoxAcc{version}"] == pytest.approx(best.mean())
        assert out[f"MaxBoxAcc{version}@50"] == pytest.approx(best[1])
    assert out["GT-known Loc"] == pytest.approx((hits["V1"][1] * 100 / len(cams)).max())


def block(x0: int, y0: int, x1: int, y1: int, value: float = 1.0) -> np.ndarray:
    cam = np.zeros((S, S), np.float32)
    cam[y0:y1, x0:x1] = value
    return cam


def test_hand_boxes() -> None:
    # pixels x 60..119, y 50..99 -> boundingRect (60, 50, 60, 50) -> x + w = 120 used as inclusive corner
    assert wsol.boxes_from_scoremap(block(60, 50, 120, 100), [0.5])[0].tolist() == [[60, 50, 120, 100]]
    # touching the right/bottom border: x + w = 224 is clipped to 223
    assert wsol.boxes_from_scoremap(block(200, 210, 224, 224), [0.5])[0].tolist() == [[200, 210, 223, 223]]
    # a single pixel (contour area 0) is still a box
    assert wsol.boxes_from_scoremap(block(20, 10, 21, 11), [0.5], multi_contour=False)[0].tolist() == [[20, 10, 21, 11]]
    # constant CAM: every pixel is > int(t * max) for t < 1, one box over the image
    const = np.full((S, S), 0.5, np.float32)
    assert all(b.tolist() == [[0, 0, 223, 223]] for b in wsol.boxes_from_scoremap(const, [0.0, 0.5, 0.99]))
    # all-zero CAM: no contour -> (0, 0, 0, 0)
    assert wsol.boxes_from_scoremap(np.zeros((S, S), np.float32), [0.0, 0.5])[1].tolist() == [[0, 0, 0, 0]]
    # two blobs: V2 keeps both, V1 the larger
    two = block(10, 10, 30, 30) + block(100, 100, 200, 150)
    assert sorted(wsol.boxes_from_scoremap(two, [0.5])[0].tolist()) == [[10, 10, 30, 30], [100, 100, 200, 150]]
    assert wsol.boxes_from_scoremap(two, [0.5], multi_contour=False)[0].tolist() == [[100, 100, 200, 150]]
    # a ring: RETR_TREE also returns the hole, whose border pixels span 39..60 -> (39, 39, 61, 61)
    ring = block(20, 20, 80, 80) - block(40, 40, 60, 60)
    assert sorted(wsol.boxes_from_scoremap(ring, [0.5])[0].tolist()) == [[20, 20, 80, 80], [39, 39, 61, 61]]


def test_quantisation_strict_greater() -> None:
    # value 0.4 -> uint8 102; max 255; at t = 0.4, int(0.4 * 255) = 102 and 102 > 102 is False
    cam = block(0, 0, 224, 224, 0.4) + block(50, 50, 100, 100, 0.6)
    boxes = wsol.boxes_from_scoremap(cam, [0.39, 0.4])
    assert boxes[0].tolist() == [[0, 0, 223, 223]]  # int(0.39 * 255) = 99 < 102
    assert boxes[1].tolist() == [[50, 50, 100, 100]]


def test_resize_boxes_truncates() -> None:
    out = wsol.resize_boxes([[101, 33, 301, 299]], (448, 300))
    # 101 * 224 / 448 = 50.5; 33 * 224 / 300 = 24.64; 301 / 2 = 150.5; 299 * 224 / 300 = 223.25
    assert out.tolist() == [[50, 24, 150, 223]]


def test_iou_exactly_half_is_a_hit() -> None:
    # predicted box: pixels 0..8 -> (0, 0, 9, 9), area 10 x 10 = 100; GT (0, 0, 9, 4), area 50 -> IoU 0.5
    ev = wsol.BoxEvaluator(cam_curve_interval=0.5, iou_thresholds=(30, 50, 70))
    ev.update(block(0, 0, 9, 9), [[0, 0, 9, 4]], (S, S))
    out = ev.compute()
    assert out["MaxBoxAccV2@50"] == 100.0 and out["MaxBoxAccV2@70"] == 0.0 and out["GT-known Loc"] == 100.0
    assert out["MaxBoxAccV2"] == pytest.approx(200 / 3)
    assert ev.per_image_best_iou().tolist() == [0.5]


def test_several_gt_boxes_and_max_over_thresholds() -> None:
    # image A: object at value 1 inside a halo at 0.4; image B: the reverse need.
    halo = block(40, 40, 180, 180, 0.4) + block(80, 80, 120, 120, 0.6)
    ev = wsol.BoxEvaluator(cam_curve_interval=0.1, iou_thresholds=(50,))
    # A's GT is the core; a second GT box far away is irrelevant (best over GT boxes)
    ev.update(halo, [[0, 0, 5, 5], [80, 80, 120, 120]], (S, S))
    # B's GT is the halo
    ev.update(halo, [[40, 40, 180, 180]], (S, S))
    acc = ev.box_accuracy("V2")[0]
    # t < 0.4: halo box (A miss, B hit); t >= 0.4: core box (A hit, B miss) -> 50 % everywhere
    assert acc.tolist() == [50.0] * 10
    assert ev.compute()["MaxBoxAccV2@50"] == 50.0


def test_top1_loc_and_cls() -> None:
    ev = wsol.BoxEvaluator(cam_curve_interval=0.5)
    cam = block(10, 10, 50, 50)
    ev.update(cam, [[10, 10, 50, 50]], (S, S), pred_class=3, gt_class=3)
    ev.update(cam, [[10, 10, 50, 50]], (S, S), pred_class=1, gt_class=3)
    out = ev.compute()
    assert out["GT-known Loc"] == 100.0 and out["Top-1 Loc"] == 50.0 and out["Top-1 Cls"] == 50.0


def test_gt_box_rescaled_before_iou() -> None:
    # original 448 x 448: GT (20, 20, 100, 100) -> (10, 10, 50, 50) on the grid
    ev = wsol.BoxEvaluator(cam_curve_interval=0.5, iou_thresholds=(90,))
    ev.update(block(10, 10, 50, 50), [[20, 20, 100, 100]], (448, 448))
    assert ev.compute()["MaxBoxAccV2@90"] == 100.0


@pytest.mark.parametrize(
    "cam, boxes, match",
    [
        (np.full((S, S), np.nan, np.float32), [[0, 0, 5, 5]], "NaN"),
        (np.zeros((100, 100), np.float32), [[0, 0, 5, 5]], "shape"),
        (np.zeros((S, S), np.float32), [[10, 0, 5, 5]], "x1 < x0"),
        (np.full((S, S), 1.5, np.float32), [[0, 0, 5, 5]], r"\[0, 1\]"),
    ],
)
def test_bad_input_raises(cam: np.ndarray, boxes: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        wsol.BoxEvaluator().update(cam, boxes, (S, S))


def test_normalize_scoremap() -> None:
    assert wsol.normalize_scoremap(np.full((4, 4), 3.0)).max() == 0
    out = wsol.normalize_scoremap(np.array([[1.0, 3.0], [2.0, 5.0]]))
    np.testing.assert_allclose(out, [[0, 0.5], [0.25, 1]])


def naive_pxap(cams: list, masks: list, ignores: list, interval: float) -> float:
    edges = np.append(np.arange(0, 1, interval), [1.0, 2.0, 3.0])
    pos = sum(np.histogram(c[m], bins=edges)[0] for c, m in zip(cams, masks)).astype(float)
    neg = sum(np.histogram(c[~m & ~i], bins=edges)[0] for c, m, i in zip(cams, masks, ignores)).astype(float)
    tp, fp = pos[::-1].cumsum(), neg[::-1].cumsum()
    auc, prev_recall = 0.0, 0.0
    for k in range(1, len(tp)):
        recall = tp[k] / pos.sum()
        if tp[k] + fp[k] > 0:
            auc += tp[k] / (tp[k] + fp[k]) * (recall - prev_recall)
        prev_recall = recall
    return auc * 100


def test_pxap_hand_case() -> None:
    cam = np.array([[0.9, 0.7], [0.6, 0.1], [0.95, 0.0]])
    fg = np.array([[1, 0], [1, 0], [0, 0]], bool)
    ignore = np.array([[0, 0], [0, 0], [1, 0]], bool)
    ev = wsol.MaskEvaluator(cam_curve_interval=0.1)
    ev.update(cam, fg, ignore)
    # ranking 0.9 (P), 0.7 (N), 0.6 (P), 0.1 (N), 0.0 (N); 0.95 ignored
    # AP = 1 * 0.5 + (2/3) * 0.5
    assert ev.compute()["PxAP"] == pytest.approx((0.5 + 1 / 3) * 100)


def test_pxap_matches_naive() -> None:
    rng = np.random.default_rng(0)
    cams = [rng.random((20, 30)) ** 2 for _ in range(4)]
    cams[0][0, 0] = 1.0
    masks = [rng.random((20, 30)) > 0.7 for _ in range(4)]
    ignores = [rng.random((20, 30)) > 0.8 for _ in range(4)]
    ev = wsol.MaskEvaluator(cam_curve_interval=0.01)
    for c, m, i in zip(cams, masks, ignores):
        ev.update(c, m, i)
    assert ev.compute()["PxAP"] == pytest.approx(naive_pxap(cams, masks, ignores, 0.01))


def test_combine_masks() -> None:
    a = np.zeros((4, 4))
    a[0, 0] = 1
    b = np.zeros((4, 4))
    b[1, 1] = 1
    ign = np.zeros((4, 4))
    ign[:2, :2] = 1
    fg, ignore = wsol.combine_masks(np.stack([a, b]), ign)
    assert fg.sum() == 2 and ignore.sum() == 2 and not (fg & ignore).any()
