"""The pieces of RegionCLIP's C4 CLIP detector (``CLIPFastRCNN``, methods.md 4a') that the ``ovd`` stage assembles:
the network (CLIP tower, class-agnostic box regressor, frozen class text embeddings), detectron2's RoI labelling and
sampling, the class scores of the frozen text classifier and the per-class selection of detections, and the way back
from the letterbox frame to the image. Plain tensors in and out; the stage is :mod:`lowlabel.methods.open_vocab.ovd`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler, BoxCoder, Matcher
from torchvision.ops import batched_nms, box_iou, clip_boxes_to_image

from lowlabel.losses.regionclip import ovd_logits
from lowlabel.methods.open_vocab.roi import region_embeddings
from lowlabel.models.clip import c4_parts

# torchvision's Faster R-CNN box coding (detectron2's BBOX_REG_WEIGHTS (10, 10, 5, 5)), its smooth-L1 beta 1/9
BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
SMOOTH_L1_BETA = 1.0 / 9.0


class OVDNet(nn.Module):
    """The trained network: the CLIP (image tower trains from ``freeze_at``, text tower frozen), the class-agnostic
    box regressor on the pooled region embedding, and the frozen class text embeddings as a buffer.

    Args:
        clip: an open_clip CLIP with a ModifiedResNet image tower (prepared by ``make_student``).
        class_emb: (C, D) unit text embeddings of every evaluated class, in class order.
        learn_background: a trained background embedding (a (D,) vector from 0, :func:`ovd_logits`); False keeps
            the paper's frozen zero logit (``background`` is then None, and checkpoints have no such key).
    """

    def __init__(self, *, clip: nn.Module, class_emb: Tensor, learn_background: bool = False) -> None:
        super().__init__()
        self.clip = clip
        self.register_buffer("class_emb", class_emb.detach().clone())
        self.background = nn.Parameter(class_emb.new_zeros(class_emb.shape[1])) if learn_background else None
        self.bbox_pred = nn.Linear(class_emb.shape[1], 4)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)  # detectron2's FastRCNNOutputLayers init
        nn.init.zeros_(self.bbox_pred.bias)

    def region_features(self, x: Tensor, boxes: Sequence[Tensor], *, pool_size: int) -> Tensor:
        """(sum R_i, D) C4 RoI embeddings of ``boxes`` (xyxy in the pixels of ``x`` (B, 3, S, S))."""
        return region_embeddings(self.clip, c4_parts(self.clip).trunk(x), boxes, pool_size=pool_size)


# --- pure parts --------------------------------------------------------------------------------------------------


def unletterbox_boxes(boxes: Tensor, hw: tuple[int, int], size: int) -> Tensor:
    """The inverse of :func:`.roi.letterbox_boxes`: boxes (N, 4) of the letterbox frame back in the (H, W)
    image's pixels, clipped to it."""
    h, w = hw
    nh, nw = max(1, round(h * size / max(h, w))), max(1, round(w * size / max(h, w)))
    top, left = (size - nh) // 2, (size - nw) // 2
    scale = boxes.new_tensor([nw / w, nh / h, nw / w, nh / h])
    return clip_boxes_to_image((boxes - boxes.new_tensor([left, top, left, top])) / scale, (h, w))


def sample_rois(proposals: Sequence[Tensor], gt_boxes: Sequence[Tensor], gt_labels: Sequence[Tensor], *,
                num_classes: int, matcher: Matcher, sampler: BalancedPositiveNegativeSampler,
                coder: BoxCoder) -> tuple[list[Tensor], Tensor, Tensor]:
    """detectron2's ``label_and_sample_proposals``: each image's proposals plus its GT boxes, matched to the GT, a
    balanced sample kept.

    Args:
        proposals, gt_boxes: per image (P_i, 4) and (G_i, 4) xyxy in one frame.
        gt_labels: per image (G_i,) long in 0..C-1.
        num_classes: C; background is label C.

    Returns:
        (per image the sampled RoIs (R_i, 4), labels (R,) in 0..C, regression targets (R, 4), zero on background).
    """
    rois, labels, targets = [], [], []
    for props, gt, gl in zip(proposals, gt_boxes, gt_labels):
        boxes = torch.cat([props, gt])  # (P + G, 4)
        if len(gt):
            idx = matcher(box_iou(gt, boxes))  # (P + G,) GT index, or -1 below fg_iou_thresh
        else:
            idx = torch.full((len(boxes),), -1, dtype=torch.int64, device=boxes.device)
        pos, neg = sampler([(idx >= 0).long()])  # foreground 1, background 0
        keep = torch.nonzero(pos[0] | neg[0]).flatten()
        matched = idx[keep].clamp(min=0)
        lab = torch.where(idx[keep] >= 0, gl[matched] if len(gt) else matched, num_classes)
        tgt = coder.encode_single(gt[matched], boxes[keep]) if len(gt) else boxes.new_zeros(len(keep), 4)
        rois.append(boxes[keep])
        labels.append(lab)
        targets.append(torch.where((lab < num_classes)[:, None], tgt, torch.zeros_like(tgt)))
    return rois, torch.cat(labels), torch.cat(targets)


def class_probabilities(region_feats: Tensor, class_emb: Tensor, *, temperature: float, background: bool,
                        background_emb: Tensor | None = None) -> Tensor:
    """(R, C) class scores of RoI embeddings: softmax over the C classes and the background logit (zero, or from a
    trained ``background_emb``), its column dropped (``background``, a trained detector), or over the C classes
    alone (zero-shot)."""
    logits = ovd_logits(region_feats, class_emb, temperature=temperature, background=background_emb)  # (R, C + 1)
    return logits.softmax(dim=1)[:, :-1] if background else logits[:, :-1].softmax(dim=1)


def novel_win_share(logits: Tensor, novel: Tensor) -> float:
    """Percent of rows of ``logits`` (R, C + 1), background last, whose largest logit is a class with ``novel`` (C,)
    True; 0 for no rows. During training no novel class is ever a label, so any such win is an error, found without
    labels: a transfer whose features drift until one novel embedding outscores everything shows it near 100."""
    if not len(logits):
        return 0.0
    wins = torch.cat([novel, novel.new_zeros(1)])[logits.argmax(dim=1)]  # (R,) the background column never novel
    return 100.0 * float(wins.float().mean())


def select_detections(boxes: Tensor, scores: Tensor, *, score_thresh: float, nms_thresh: float,
                      max_dets: int) -> tuple[Tensor, Tensor, Tensor]:
    """detectron2's ``fast_rcnn_inference_single_image`` for class-agnostic boxes.

    Args:
        boxes: (R, 4) xyxy, one box per region.
        scores: (R, C) class scores.

    Returns:
        (boxes (N, 4), scores (N,) descending, labels (N,) in 0..C-1): every (region, class) pair scoring above
        ``score_thresh``, per-class NMS at ``nms_thresh``, the best ``max_dets``.
    """
    rows, cols = torch.nonzero(scores > score_thresh, as_tuple=True)  # (K,), (K,)
    b, s = boxes[rows], scores[rows, cols]
    keep = batched_nms(b.float(), s.float(), cols, nms_thresh)[:max_dets]  # by descending score
    return b[keep], s[keep], cols[keep]
