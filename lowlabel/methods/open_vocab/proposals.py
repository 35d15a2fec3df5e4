"""Class-agnostic region proposals from a frozen detector's RPN: the regions of RegionCLIP's pretraining and its
zero-shot detection.

RegionCLIP (Zhong et al., CVPR 2022, arXiv:2112.09106; methods.md 4a.2, 4a', 4a'') never learns its proposals: an
offline RPN trained class-agnostically on base-category boxes is frozen and run on every image. Here that RPN is a
``lowlabel train detector`` run with ``data.class_agnostic: true`` on the base boxes (ShapesWorld ``coco/`` train:
``configs/detector/coco-rpn-synth-{quick,full}.yaml``; real COCO: ``configs/detector/coco-rpn.yaml``). A detector of
several classes works as well: torchvision's RPN scores objectness per anchor whatever the classes, so only its box
head (unused here) knows them. For each uint8 image::

    x = transform(image / 255)                  the detector's own normalisation and resize (scale s_h, s_w)
    F = backbone(x)                             (1, C, H/8, W/8) for resnet_small, one map ("0")
    o, d = rpn.head(F)                          objectness logits (A h w,) and deltas (A h w, 4) of every anchor
    b = decode(d, anchors)                      (A h w, 4) xyxy in the resized image
    keep the pre_nms_top_n highest o per map, clip b to the resized image, rescale by (1/s_w, 1/s_h)
    drop boxes with a side < min_size (input pixels); p = sigmoid(o)
    NMS at nms_thresh, then the post_nms_top_n best               -> Proposals(boxes, scores = p), sorted by p

torchvision's RPN does the same in eval mode (``RegionProposalNetwork.filter_proposals``) but returns the boxes only
(``GeneralizedRCNN`` drops the objectness), with its own ``post_nms_top_n_test`` and ``nms_thresh``; so the steps are
written out here with the settings of :class:`ProposalConfig`. The NMS runs once over all maps (detectron2 and
torchvision batch it per FPN level; the C4 detector has one map, so the two agree) and on the boxes in input pixels,
so no two returned boxes overlap above ``nms_thresh`` (the detector's resize has one scale for both axes, so the
overlaps are those of the resized image up to rounding).

Pretraining then keeps a random ``num_sampled`` of each image's proposals (:func:`sample_regions`, RegionCLIP's
``PRETRAIN_SAMPLE_REGIONS 100`` of ``PRETRAIN_RPN_REGIONS 300``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import clip_boxes_to_image, nms, remove_small_boxes

from lowlabel.errors import UserError
from lowlabel.methods.base import Frozen
from lowlabel.methods.cross_domain.common import load_detector
from lowlabel.models.modes import eval_mode

PROPOSER_HINT = "train one with `lowlabel train detector --config configs/detector/coco-rpn-synth-quick.yaml`"


@dataclass
class ProposalConfig:
    """The offline proposal network and how many of its boxes a stage takes (RegionCLIP's pretraining values)."""

    source: str = ""  # a class-agnostic `lowlabel train detector` run folder, its checkpoint or save_pretrained folder
    pre_nms_top_n: int = 6000  # boxes per feature map ranked before NMS: detectron2's RPN.PRE_NMS_TOPK_TEST
    post_nms_top_n: int = 300  # RegionCLIP PRETRAIN_RPN_REGIONS (zero-shot detection: the RPN's 1,000)
    nms_thresh: float = 0.5  # RegionCLIP OFFLINE_RPN_NMS_THRESH for pretraining; zero-shot inference uses 0.9 (ViLD)
    # detectron2's RPN.MIN_SIZE is 0 (every non-empty box). A box under one input pixel on a side has no pixel to
    # crop or pool, so it cannot be a region; 1 px drops only those.
    min_size: float = 1.0
    num_sampled: int = 100  # RegionCLIP PRETRAIN_SAMPLE_REGIONS: random regions kept per image (sample_regions)

    def __post_init__(self) -> None:
        if self.pre_nms_top_n < 1 or self.post_nms_top_n < 1 or self.num_sampled < 1:
            raise ValueError(
                f"proposals.pre_nms_top_n, post_nms_top_n and num_sampled must be >= 1, got {self.pre_nms_top_n}, "
                f"{self.post_nms_top_n} and {self.num_sampled}"
            )
        if not 0.0 < self.nms_thresh <= 1.0:
            raise ValueError(f"proposals.nms_thresh must be in (0, 1], got {self.nms_thresh}")
        if self.min_size < 0:
            raise ValueError(f"proposals.min_size must be >= 0, got {self.min_size}")


class Proposals(NamedTuple):
    """One image's proposals.

    Attributes:
        boxes: (R, 4) float32 xyxy with exclusive extents, in the input image's pixels.
        scores: (R,) float32 RPN objectness (the sigmoid of its logit) in [0, 1], sorted descending.
    """

    boxes: Tensor
    scores: Tensor


def load_proposer(source: str) -> Frozen:
    """The frozen proposal network of ``source`` (a detector run folder, its checkpoint or ``save_pretrained``
    folder), in eval mode without gradients.

    A detector of several classes is accepted: its RPN is class-agnostic (module docstring).

    Raises:
        UserError: one line naming ``source``: empty, missing, or not a detector run.
    """
    if not str(source):
        raise UserError(f"proposals.source: empty; name a class-agnostic detector run ({PROPOSER_HINT})")
    if not Path(source).exists():
        raise UserError(f"{source}: no such proposal network run or checkpoint ({PROPOSER_HINT})")
    frozen, _ = load_detector(str(source))
    return frozen


def _check_images(images: Sequence[Tensor]) -> None:
    for image in images:
        if image.ndim != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
            raise ValueError(f"propose: images must be uint8 (3, H, W), got {image.dtype} {tuple(image.shape)}")


def _top_per_map(logits: Tensor, per_map: Sequence[int], k: int) -> Tensor:
    """Indices of the ``k`` highest of ``logits`` (N,) within each consecutive block of ``per_map`` sizes."""
    picked, offset = [], 0
    for n in per_map:
        picked.append(logits[offset : offset + n].topk(min(k, n)).indices + offset)
        offset += n
    return torch.cat(picked)


@torch.no_grad()
def propose(detector: nn.Module, images: Sequence[Tensor], cfg: ProposalConfig) -> list[Proposals]:
    """Class-agnostic proposals of a torchvision Faster R-CNN's RPN (module docstring for the steps).

    Args:
        detector: a network of :func:`lowlabel.methods.cross_domain.common.build_network` (its ``transform``,
            ``backbone`` and ``rpn`` are used); run in eval mode, its mode restored after.
        images: uint8 ``(3, H_i, W_i)`` images of any sizes.
        cfg: how many boxes, the NMS threshold and the smallest side.

    Returns:
        One :class:`Proposals` per image, on the detector's device: at most ``cfg.post_nms_top_n`` boxes in the
        image's pixels, sorted by objectness, no two with IoU above ``cfg.nms_thresh``.
    """
    if not images:
        return []
    _check_images(images)
    device = next(detector.parameters()).device
    with eval_mode([detector]):
        batch, _ = detector.transform([image.to(device).float() / 255 for image in images])
        features = detector.backbone(batch.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        maps = list(features.values())
        rpn = detector.rpn
        logits, deltas = rpn.head(maps)  # per map: (B, A, h, w), (B, 4 A, h, w)
        anchors = rpn.anchor_generator(batch, maps)  # per image: (N, 4), N = sum of A h w over the maps
        per_map = [int(o[0].numel()) for o in logits]  # A h w of each map
        logits, deltas = concat_box_prediction_layers(logits, deltas)  # (B N, 1), (B N, 4)
        boxes = rpn.box_coder.decode(deltas, anchors).view(len(images), -1, 4)  # (B, N, 4) in the resized images
        logits = logits.view(len(images), -1)  # (B, N)
    out = []
    for i, image in enumerate(images):
        top = _top_per_map(logits[i], per_map, cfg.pre_nms_top_n)
        b = clip_boxes_to_image(boxes[i, top], batch.image_sizes[i])  # (K, 4) in the resized image
        (h, w), (rh, rw) = image.shape[-2:], batch.image_sizes[i]
        scale = torch.tensor([w / rw, h / rh, w / rw, h / rh], device=b.device)
        b = clip_boxes_to_image(b * scale, (h, w))  # (K, 4) in input pixels (clipped again against rounding)
        p = torch.sigmoid(logits[i, top])  # (K,)
        small = remove_small_boxes(b, cfg.min_size) if cfg.min_size > 0 else torch.arange(len(b), device=b.device)
        b, p = b[small], p[small]
        keep = nms(b, p, cfg.nms_thresh)[: cfg.post_nms_top_n]  # indices by descending score
        out.append(Proposals(boxes=b[keep].float(), scores=p[keep].float()))
    return out


def cached_proposals(detector: nn.Module, keys: Sequence[Any], images: Sequence[Tensor], cfg: ProposalConfig,
                     cache: dict[Any, Proposals]) -> list[Proposals]:
    """Each image's proposals (on the CPU), taken from ``cache`` by its key, or proposed (:func:`propose`, the missing
    images in one call) and stored there. Pass a fresh dict to propose every time."""
    todo = [i for i, key in enumerate(keys) if key not in cache]
    if todo:
        for i, props in zip(todo, propose(detector, [images[i] for i in todo], cfg)):
            cache[keys[i]] = Proposals(props.boxes.cpu(), props.scores.cpu())
    return [cache[key] for key in keys]


def sample_regions(proposals: Proposals, k: int, generator: torch.Generator | None = None) -> Proposals:
    """``k`` of an image's proposals drawn uniformly without replacement (all of them if there are at most ``k``),
    kept in score order: RegionCLIP's ``PRETRAIN_SAMPLE_REGIONS`` (100 of the 300 it proposes).

    Args:
        proposals: one image's proposals, sorted by score.
        k: how many to keep (>= 0).
        generator: a CPU random generator (None: torch's global one).
    """
    if k < 0:
        raise ValueError(f"sample_regions: k must be >= 0, got {k}")
    n = len(proposals.scores)
    if n <= k:
        return proposals
    pick = torch.randperm(n, generator=generator)[:k].sort().values.to(proposals.scores.device)  # (k,) in score order
    return Proposals(boxes=proposals.boxes[pick], scores=proposals.scores[pick])

