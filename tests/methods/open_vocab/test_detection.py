"""The C4 CLIP detector's pieces (lowlabel/methods/open_vocab/detection.py) on hand-computed tensors: RoI labelling
and sampling, per-class selection, the letterbox inverse, and all-class against novel-only scoring on a hand-made case
(the near-zero novel AP of evaluating with the novel embeddings alone, methods.md 4d), scored by the COCO scorer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, BoxCoder, Matcher

from lowlabel.methods.open_vocab import detection as det
from lowlabel.methods.open_vocab.roi import letterbox_boxes
from lowlabel.metrics.coco import coco_box_ap


def test_sample_rois_labels_by_iou_and_appends_the_gt() -> None:
    # one GT box of class 1 (of C = 2); proposals: the box shifted by 1 px (IoU 81/121 = 0.67, foreground), a box
    # half outside it (IoU 50/150 = 0.33, background) and a far box (IoU 0, background); the GT box itself is added.
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    props = torch.tensor([[1.0, 1.0, 11.0, 11.0], [5.0, 0.0, 15.0, 10.0], [30.0, 30.0, 40.0, 40.0]])
    coder = BoxCoder(det.BOX_CODER_WEIGHTS)
    rois, labels, targets = det.sample_rois([props], [gt], [torch.tensor([1])], num_classes=2,
                                            matcher=Matcher(0.5, 0.5, allow_low_quality_matches=False),
                                            sampler=BalancedPositiveNegativeSampler(16, 0.25), coder=coder)
    order = {tuple(b.tolist()): (int(lab), t) for b, lab, t in zip(rois[0], labels, targets)}
    assert len(order) == 4  # 16 sampled at most: every box kept
    assert order[(1.0, 1.0, 11.0, 11.0)][0] == 1 and order[(0.0, 0.0, 10.0, 10.0)][0] == 1
    assert order[(5.0, 0.0, 15.0, 10.0)][0] == 2 and order[(30.0, 30.0, 40.0, 40.0)][0] == 2  # background = C
    # the shifted box's target: dx = dy = 10 * (-1 / 10), dw = dh = 5 * log(10 / 10) = 0
    assert torch.allclose(order[(1.0, 1.0, 11.0, 11.0)][1], torch.tensor([-1.0, -1.0, 0.0, 0.0]))
    assert torch.equal(order[(30.0, 30.0, 40.0, 40.0)][1], torch.zeros(4))


def test_sample_rois_without_gt_is_all_background() -> None:
    props = torch.tensor([[0.0, 0.0, 4.0, 4.0]])
    _, labels, targets = det.sample_rois([props], [torch.zeros(0, 4)], [torch.zeros(0, dtype=torch.int64)],
                                         num_classes=3, matcher=Matcher(0.5, 0.5), coder=BoxCoder((1, 1, 1, 1)),
                                         sampler=BalancedPositiveNegativeSampler(8, 0.25))
    assert labels.tolist() == [3] and torch.equal(targets, torch.zeros(1, 4))


def test_select_detections_is_per_class_nms() -> None:
    # two overlapping boxes (IoU 0.82): class 0 keeps the better one only, class 1 keeps both classes apart;
    # a score at the threshold is dropped (strictly above, as detectron2)
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 11.0]])
    scores = torch.tensor([[0.9, 0.05], [0.8, 0.3]])
    b, s, labels = det.select_detections(boxes, scores, score_thresh=0.05, nms_thresh=0.5, max_dets=10)
    assert s.tolist() == pytest.approx([0.9, 0.3]) and labels.tolist() == [0, 1]
    assert torch.equal(b, boxes)
    assert len(det.select_detections(boxes, scores, score_thresh=0.05, nms_thresh=0.5, max_dets=1)[1]) == 1


def test_class_probabilities_with_and_without_background() -> None:
    emb = torch.eye(2)
    feats = torch.tensor([[1.0, 0.0]])  # cos 1 and 0: logits 100, 0 and the background 0
    with_bg = det.class_probabilities(feats, emb, temperature=0.01, background=True)
    assert torch.allclose(with_bg, torch.tensor([[1.0, 0.0]]), atol=1e-6)
    # a trained background embedding (0.5, 0), not normalised: logits (1, 0, 0.5) at tau 1, the background column
    # dropped after the softmax
    learnt = det.class_probabilities(feats, emb, temperature=1.0, background=True,
                                     background_emb=torch.tensor([0.5, 0.0]))
    total = math.e + 1 + math.exp(0.5)
    assert torch.allclose(learnt, torch.tensor([[math.e / total, 1 / total]]))
    weak = det.class_probabilities(0.01 * feats, emb, temperature=1.0, background=False)  # cos is scale-free
    e = torch.e
    assert torch.allclose(weak, torch.tensor([[e / (e + 1), 1 / (e + 1)]]))  # softmax of (1, 0), no background


def test_unletterbox_inverts_letterbox_boxes() -> None:
    boxes = torch.tensor([[0.0, 0.0, 48.0, 40.0], [12.0, 10.0, 24.0, 20.0]])
    assert torch.allclose(det.unletterbox_boxes(letterbox_boxes(boxes, (40, 48), 64), (40, 48), 64), boxes, atol=1e-4)


def test_novel_only_embeddings_give_the_documented_drop() -> None:
    # Classes red (1), green (2) base, blue (4) novel; embeddings e_red, e_green, e_blue, and a 4th direction e_x.
    # Images 1-3 hold one red box each, image 4 one blue box; each GT box is its own region, with the features below.
    # All classes (tau 0.01, zero background logit): a red region scores red ~1 and blue e^(20-98) ~ 0 (below 0.05);
    # the blue region scores blue e^10 / (e^10 + e^5 + 1 + 1) = 0.993: AP50 novel 100, base 100.
    # Novel only: a red region's blue score is sigmoid(20) = 1.0 in float32, the blue region's sigmoid(10) = 0.99995,
    # so three false positives rank above the one true blue box: precision 1/4 at every recall, AP50 novel 25.
    emb = torch.eye(4)[:3]  # (3, 4) red, green, blue
    red = torch.tensor([0.98, 0.0, 0.20, 0.0])
    blue = torch.tensor([0.05, 0.0, 0.10, (1 - 0.05**2 - 0.10**2) ** 0.5])
    feats = F.normalize(torch.stack([red / red.norm(), red / red.norm(), red / red.norm(), blue]), dim=-1)
    boxes = torch.tensor([[2.0, 2.0, 12.0, 12.0]])
    gt = {"images": [{"id": i, "width": 20, "height": 20} for i in range(1, 5)],
          "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "green"}, {"id": 4, "name": "blue"}],
          "annotations": [{"id": i, "image_id": i, "category_id": 1 if i < 4 else 4, "bbox": [2, 2, 10, 10],
                           "area": 100, "iscrowd": 0} for i in range(1, 5)]}
    cat_ids = [1, 2, 4]

    def ap50(cols: list[int]) -> dict[str, float]:
        rows = []
        for image_id, feat in enumerate(feats, start=1):
            probs = det.class_probabilities(feat[None], emb[cols], temperature=0.01,
                                            background=True)  # (1, C')
            b, s, labels = det.select_detections(boxes, probs, score_thresh=0.05, nms_thresh=0.5, max_dets=100)
            rows += [{"image_id": image_id, "category_id": cat_ids[cols[int(c)]], "score": float(v),
                      "bbox": [2, 2, 10, 10]} for v, c in zip(s, labels)]
        scored = coco_box_ap(gt, rows, {"all": cat_ids, "novel": [4], "base": [1, 2]})
        return {k: scored[k]["AP50"] for k in ("novel", "base")}

    assert ap50([0, 1, 2]) == pytest.approx({"novel": 100.0, "base": 100.0})
    assert ap50([2]) == pytest.approx({"novel": 25.0, "base": 0.0})


def test_novel_win_share_counts_rows_won_by_a_novel_class() -> None:
    logits = torch.tensor([[1.0, 5.0, 0.0], [3.0, 1.0, 0.0], [0.0, 0.0, 9.0]])  # novel wins, base wins, background
    assert det.novel_win_share(logits, torch.tensor([False, True])) == pytest.approx(100 / 3)
    assert det.novel_win_share(logits, torch.tensor([False, False])) == 0.0
    assert det.novel_win_share(logits[:0], torch.tensor([False, True])) == 0.0
