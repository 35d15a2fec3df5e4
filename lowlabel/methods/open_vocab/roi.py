"""CLIP's C4 RoI head and zero-shot region scores on RoI features, as RegionCLIP uses them (Zhong et al., CVPR 2022,
arXiv:2112.09106; methods.md 4a.1 and 4a''): the image tower up to res4 runs once per image, each box is RoI-aligned on
res4, and res5 and the attention pool turn it into an embedding in the text space.

Boxes live in the frame of the letterboxed input (:func:`lowlabel.methods.open_vocab.common.letterbox`):
:func:`letterbox_boxes` maps a box of the original image there, with letterbox's own rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from lowlabel.methods.open_vocab.common import ZeroShotScores, letterbox
from lowlabel.models.clip import attention_pool, c4_parts

RES4_STRIDE = 16  # ModifiedResNet: stem /4, res3 /2, res4 /2


def default_pool_size(model: nn.Module) -> int:
    """2 x the attention pool's grid: res5 halves the RoI, so the pool sees the grid it was trained on."""
    return 2 * math.isqrt(model.visual.attnpool.positional_embedding.shape[0] - 1)


def region_embeddings(model: nn.Module, res4: Tensor, boxes: Sequence[Tensor], *, pool_size: int) -> Tensor:
    """The C4 RoI head: RoIAlign on res4, res5, attention pooling (methods.md 4a.1).

    Args:
        model: an open_clip CLIP with a ModifiedResNet image tower.
        res4: (B, C4, H / 16, W / 16) from ``c4_parts(model).trunk``.
        boxes: B tensors (R_i, 4), xyxy in the pixels of the input the trunk saw.
        pool_size: RoIAlign output side (even).

    Returns:
        (sum R_i, D) embeddings (not normalised), regions in image order.
    """
    parts = c4_parts(model)
    if sum(len(b) for b in boxes) == 0:
        return res4.new_zeros(0, parts.attnpool.c_proj.out_features)
    # detectron2's ROIAlignV2: aligned (a box corner is a pixel corner), sampling ratio 0 (adaptive)
    rois = roi_align(res4, [b.to(res4.dtype) for b in boxes], output_size=pool_size,
                     spatial_scale=1.0 / RES4_STRIDE, sampling_ratio=0, aligned=True)  # (R, C4, P, P)
    return attention_pool(parts.attnpool, parts.res5(rois))  # (R, C5, P / 2, P / 2) -> (R, D)


def whole_boxes(batch: int, size: int, device: torch.device) -> list[Tensor]:
    """One whole-canvas box [0, 0, size, size] per image (the image-text loss's "whole-image box")."""
    box = torch.tensor([[0.0, 0.0, size, size]], device=device)
    return [box] * batch


def letterbox_boxes(boxes: Tensor, hw: tuple[int, int], size: int) -> Tensor:
    """``boxes`` (N, 4) xyxy in an (H, W) image mapped into its :func:`letterbox` frame of side ``size`` (the same
    rounding as letterbox itself)."""
    h, w = hw
    nh, nw = max(1, round(h * size / max(h, w))), max(1, round(w * size / max(h, w)))
    top, left = (size - nh) // 2, (size - nw) // 2
    scale = boxes.new_tensor([nw / w, nh / h, nw / w, nh / h])
    return boxes * scale + boxes.new_tensor([left, top, left, top])


def plain_boxes(boxes: Any) -> Tensor:
    """(N, 4) float32 plain tensor of a dataset item's boxes (torchvision's ``BoundingBoxes`` included)."""
    return torch.as_tensor(boxes).as_subclass(Tensor).float().reshape(-1, 4)


def flip_boxes(boxes: Tensor, size: int) -> Tensor:
    """Boxes (N, 4) xyxy of a ``size``-wide canvas after a horizontal mirror."""
    return torch.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], dim=1)


@torch.no_grad()
def roi_zero_shot_scores(model: nn.Module, dataset: Any, class_emb: Tensor, *, size: int, pool_size: int,
                         batch_size: int = 32) -> tuple[ZeroShotScores, list[int]]:
    """Cosine similarities to ``class_emb`` ((C, D) unit rows) of every GT box's RoI feature and of every whole
    (letterboxed) image, ``batch_size`` images at a time (the RoI-feature counterpart of
    :func:`lowlabel.methods.open_vocab.common.zero_shot_scores`, which embeds crops), and the number of GT boxes
    of each image."""
    device = class_emb.device
    num_classes = class_emb.shape[0]
    ids, img_scores, img_labels, reg_scores, reg_labels = [], [], [], [], []
    counts: list[int] = []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        x = torch.stack([letterbox(torch.as_tensor(it["image"]), size) for it in items]).to(device)
        boxes = [letterbox_boxes(plain_boxes(it["boxes"]), tuple(it["image"].shape[-2:]), size).to(device)
                 for it in items]
        res4 = c4_parts(model).trunk(x)  # (b, C4, S / 16, S / 16)
        whole = region_embeddings(model, res4, whole_boxes(len(x), size, device), pool_size=pool_size)  # (b, D)
        regions = region_embeddings(model, res4, boxes, pool_size=pool_size)  # (r, D)
        img_scores.append(torch.nn.functional.normalize(whole, dim=-1) @ class_emb.t())  # (b, C)
        reg_scores.append(torch.nn.functional.normalize(regions, dim=-1) @ class_emb.t())  # (r, C)
        for it in items:
            labels = torch.as_tensor(it["labels"])
            ids.append(int(it["image_id"]))
            img_labels.append(torch.zeros(num_classes, dtype=torch.bool).index_fill_(0, labels, True))
            reg_labels += labels.tolist()
            counts.append(len(labels))
    empty = torch.zeros(0, num_classes)
    scores = ZeroShotScores(
        image_ids=ids, image_scores=torch.cat(img_scores).cpu() if img_scores else empty,
        image_labels=torch.stack(img_labels) if img_labels else empty.bool(),
        region_scores=torch.cat(reg_scores).cpu() if reg_scores else empty,
        region_labels=torch.tensor(reg_labels, dtype=torch.int64))
    return scores, counts


def per_image_region_accuracy(scores: ZeroShotScores, boxes_per_image: Sequence[int]) -> list[float]:
    """Each image's share (percent) of its GT boxes classified right, all classes competing; NaN without boxes.

    Args:
        boxes_per_image: the number of GT boxes of each image, in ``scores``' order (their rows are consecutive).
    """
    hits = (scores.region_scores.argmax(dim=1) == scores.region_labels).float()  # (R,)
    out = []
    for chunk in hits.split(list(boxes_per_image)):
        out.append(100.0 * float(chunk.mean()) if len(chunk) else math.nan)
    return out
