"""VOC AP (07 11-point and all-point) and CorLoc on hand-derived cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lowlabel.metrics import corloc, voc_ap


def hand_evaluator(use_07: bool) -> voc_ap.VOCAPEvaluator:
    ev = voc_ap.VOCAPEvaluator(class_names=["obj"], use_07_metric=use_07)
    # image A: two GT; B: one GT and one difficult GT
    ev.update(
        "A",
        pred_boxes=[[0, 0, 9, 9], [0, 0, 9, 9], [100, 100, 110, 110]],
        pred_scores=[0.9, 0.8, 0.5],  # TP, duplicate -> FP, FP
        pred_labels=[0, 0, 0],
        gt_boxes=[[0, 0, 9, 9], [20, 20, 29, 29]],
        gt_labels=[0, 0],
    )
    ev.update(
        "B",
        pred_boxes=[[50, 50, 59, 59], [0, 0, 9, 9]],
        pred_scores=[0.7, 0.6],  # matches the difficult box -> ignored; TP
        pred_labels=[0, 0],
        gt_boxes=[[0, 0, 9, 9], [50, 50, 59, 59]],
        gt_labels=[0, 0],
        gt_difficult=[False, True],
    )
    return ev


def test_all_point_ap_hand() -> None:
    # rec = [1/3, 1/3, 1/3, 2/3, 2/3], prec = [1, 1/2, 1/2, 2/3, 1/2] -> 1/3 * 1 + 1/3 * 2/3 = 5/9
    out = hand_evaluator(False).compute()
    assert out["mAP"] == pytest.approx(500 / 9) and out["use_07_metric"] is False


def test_11_point_ap_hand() -> None:
    # precision 1 at t in {0, .1, .2, .3}, 2/3 at t in {.4, .5, .6}, 0 above -> (4 + 2) / 11
    out = hand_evaluator(True).compute()
    assert out["mAP"] == pytest.approx(600 / 11) and out["use_07_metric"] is True


def test_iou_exactly_half_is_a_miss_and_tiny_boxes() -> None:
    ev = voc_ap.VOCAPEvaluator(class_names=["a", "b", "c"])
    # (0, 0, 9, 9) has area 100 with +1; GT (0, 0, 9, 4) area 50 -> IoU 0.5, not > 0.5
    ev.update("x", [[0, 0, 9, 9], [5, 5, 5, 5]], [1.0, 1.0], [0, 1], [[0, 0, 9, 4], [5, 5, 5, 5]], [0, 1])
    out = ev.compute()
    assert out["AP"]["a"] == 0.0 and out["AP"]["b"] == pytest.approx(100.0)  # a one-pixel box matches itself
    assert out["AP"]["c"] is None and out["mAP"] == pytest.approx(50.0)  # absent class excluded from the mean


def test_no_detections_gives_zero() -> None:
    ev = voc_ap.VOCAPEvaluator(class_names=["a"])
    ev.update("x", np.zeros((0, 4)), [], [], [[0, 0, 5, 5]], [0])
    assert ev.compute()["mAP"] == 0.0


def test_bad_box_raises() -> None:
    ev = voc_ap.VOCAPEvaluator(class_names=["a"])
    with pytest.raises(ValueError, match="x1 < x0"):
        ev.update("x", [[5, 0, 1, 5]], [1.0], [0], [[0, 0, 5, 5]], [0])


def test_corloc_hand() -> None:
    gt = {
        "cat": {"a": [[0, 0, 9, 9], [20, 20, 39, 39]], "b": [[0, 0, 9, 4]], "c": [[0, 0, 5, 5]], "d": []},
        "dog": {"a": [[50, 50, 60, 60]]},
        "cow": {"a": []},
    }
    dets = {
        "cat": [
            ("a", 0.9, [20, 20, 39, 39]),  # top box hits the second GT box
            ("a", 0.1, [0, 0, 1, 1]),  # lower score: ignored
            ("b", 0.8, [0, 0, 9, 9]),  # IoU exactly 0.5: strict > fails
            ("d", 0.9, [0, 0, 5, 5]),  # image without cats: not counted
        ],  # image c has no detection: miss
        "dog": [("a", 0.5, [50, 50, 60, 60])],
    }
    out = corloc.corloc(dets, gt)
    assert out["per_class"] == {"cat": pytest.approx(100 / 3), "dog": 100.0, "cow": None}
    assert out["CorLoc"] == pytest.approx((100 / 3 + 100) / 2)


def test_read_voc_objects(tmp_path: Path) -> None:
    xml = tmp_path / "x.xml"
    xml.write_text(
        "<annotation><object><name>cat</name><difficult>1</difficult><bndbox><xmin>1</xmin><ymin>2</ymin>"
        "<xmax>30</xmax><ymax>40</ymax></bndbox></object><object><name>dog</name><bndbox><xmin>5</xmin>"
        "<ymin>6</ymin><xmax>7</xmax><ymax>8</ymax></bndbox></object></annotation>"
    )
    objs = voc_ap.read_voc_objects(xml)
    assert objs == [
        {"name": "cat", "difficult": True, "bbox": [1.0, 2.0, 30.0, 40.0]},
        {"name": "dog", "difficult": False, "bbox": [5.0, 6.0, 7.0, 8.0]},
    ]
    (tmp_path / "bad.xml").write_text("<annotation><object>")
    with pytest.raises(ValueError, match="bad.xml"):
        voc_ap.read_voc_objects(tmp_path / "bad.xml")
