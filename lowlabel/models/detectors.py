"""Faster R-CNN with a C4 head, assembled from torchvision's detection parts.

detectron2's R50-C4 (the detector of LGCL's experiments, reference/methods.md section 1a item 10), rebuilt from
``torchvision.models.detection``::

    images (list of (3, H_i, W_i) float in [0, 1])
      -> GeneralizedRCNNTransform: normalise (ImageNet mean/std), resize (shorter side ``min_size``, longer side at
         most ``max_size``; ``min_size = 0`` keeps the size), pad to a multiple of the trunk stride
      -> trunk: stem + res2..res4 of a ResNet                          (B, C4, H/16, W/16)  ("res4", stride 16)
      -> RPN on that one map: AnchorGenerator + RPNHead (3x3 conv, ReLU, 1x1 objectness and deltas)
      -> MultiScaleRoIAlign on the same map, ``pool_size`` x ``pool_size`` per proposal        (R, C4, 14, 14)
      -> box head: res5 applied per RoI (first block stride 2)                                 (R, C5, 7, 7)
         then global average pooling                                                           (R, C5)
      -> FastRCNNPredictor: class logits (R, K + 1) and class-specific box deltas (R, 4 (K + 1))

torchvision numbers the classes 1..K and keeps 0 for the background; callers of :func:`build_detector` give K,
the number of object classes.

Backbones:

* ``resnet50``, ``resnet18``: torchvision ResNets (v1.5: the stride on the 3x3 conv), C4 = 1024 / 256 channels,
  C5 = 2048 / 512. With pretrained weights every BatchNorm is frozen (torchvision's ``FrozenBatchNorm2d``; the running
  statistics and affine values of the checkpoint), as detectron2's ``NORM: FrozenBN`` does for its batch of 2 images
  per GPU.
* ``resnet_small``: ours (:func:`lowlabel.models.backbones.build_backbone`, one BasicBlock per stage, strides 2, 1,
  2, 2, 1). The trunk is the stem and the first three stages (stride 8, 4 x width channels); the head is the last
  stage (stride 1, 8 x width channels). Its default RoIAlign size is 7: the head then sees a 7 x 7 map, the size
  detectron2's res5 produces from its 14 x 14 pool (res5 halves it; our last stage keeps it). ShapesWorld objects of
  10-48 px span 1-6 cells of the stride-8 map, so a larger pool would only interpolate the same few cells at 4x the
  head's cost, and a smaller one would lose the corners a 3 x 3 conv needs. Trained from scratch it keeps ordinary
  (training-mode) BatchNorm.

Departures from detectron2 that torchvision's parts impose: RoIAlign without the half-pixel offset (detectron2's
``ROIAlign`` v1, not ``ROIAlignV2``); smooth-L1 box losses with beta 1/9 (detectron2: L1). The RoIAlign scale is
set from the trunk stride at construction instead of torchvision's guess from the first batch (a guess that a tiny
first image can get wrong, and that it then keeps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d
from torchvision.ops.poolers import initLevelMapper

from lowlabel.models.backbones import build_backbone
from lowlabel.models.weights import load_torchvision_weights, resolve_pretrained
from lowlabel.structures import IMAGENET_MEAN, IMAGENET_STD

DETECTOR_BACKBONES = ("resnet50", "resnet18", "resnet_small")
TORCHVISION_WEIGHTS = "torchvision"  # `pretrained` value: torchvision's ImageNet weights (downloaded once)


@dataclass
class RPNSettings:
    """The region proposal network. Defaults: detectron2's (``config/defaults.py``: ``MODEL.RPN``, anchors).

    ``pre_nms_top_n_*``/``post_nms_top_n_*`` count proposals per image before and after the NMS at ``nms_thresh``.
    """

    anchor_sizes: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)  # sqrt(area) in input pixels, all on res4
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # height / width
    pre_nms_top_n_train: int = 12000
    post_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 6000
    post_nms_top_n_test: int = 1000
    nms_thresh: float = 0.7
    fg_iou_thresh: float = 0.7
    bg_iou_thresh: float = 0.3
    batch_size_per_image: int = 256  # anchors sampled per image for the RPN losses
    positive_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not self.anchor_sizes or not self.aspect_ratios or min(*self.anchor_sizes, *self.aspect_ratios) <= 0:
            raise ValueError(
                f"anchor sizes and aspect ratios must be non-empty and > 0, got {self.anchor_sizes} and "
                f"{self.aspect_ratios}"
            )


@dataclass
class RoISettings:
    """The box head. Defaults: detectron2's (``MODEL.ROI_HEADS``, ``ROI_BOX_HEAD``); ``pool_size = 0`` picks the
    backbone's (14 for the torchvision ResNets as detectron2's ``POOLER_RESOLUTION``, 7 for ``resnet_small``)."""

    pool_size: int = 0
    batch_size_per_image: int = 512  # RoIs sampled per image for the box losses
    positive_fraction: float = 0.25
    fg_iou_thresh: float = 0.5
    score_thresh: float = 0.05  # test: detections kept above this score (per class, before NMS)
    nms_thresh: float = 0.5  # test: per-class NMS
    detections_per_img: int = 100

    def __post_init__(self) -> None:
        if self.pool_size < 0:
            raise ValueError(f"roi.pool_size must be >= 0, got {self.pool_size}")


class C4Trunk(nn.Module):
    """The stem and the stages up to res4: ``(B, 3, H, W) -> (B, out_channels, H / stride, W / stride)``.

    Args:
        stages: the stem first, then the stages, applied in order.
        out_channels: channels of the last stage (torchvision's detection models read this attribute).
        stride: input size / output size.
    """

    def __init__(self, *, stages: list[nn.Module], out_channels: int, stride: int) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        for stage in self.stages:
            x = stage(x)
        return x


class Res5BoxHead(nn.Module):
    """The last ResNet stage applied to every RoI, then global average pooling: ``(R, C4, p, p) -> (R, C5)``."""

    def __init__(self, *, stage: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.res5 = stage
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.res5(x).mean(dim=(2, 3))  # (R, C5, p', p') -> (R, C5)


class _Transform(GeneralizedRCNNTransform):
    """torchvision's transform, with ``min_size = 0`` meaning "keep each image's size" (train and test)."""

    def __init__(self, *, keep_size: bool, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.keep_size = keep_size

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor] | None]:
        if self.keep_size:
            return image, target
        return super().resize(image, target)


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` under ``module`` by a ``FrozenBatchNorm2d`` with the same statistics and affine
    values (detectron2's ``FrozenBatchNorm2d.convert_frozen_batchnorm``); returns the converted module."""
    if isinstance(module, nn.BatchNorm2d):
        frozen = FrozenBatchNorm2d(module.num_features, eps=module.eps)
        with torch.no_grad():
            if module.affine:
                frozen.weight.copy_(module.weight)
                frozen.bias.copy_(module.bias)
            if module.running_mean is not None and module.running_var is not None:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
        return frozen
    for name, child in module.named_children():
        new = freeze_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


def _torchvision_parts(name: str, pretrained: str) -> tuple[list[nn.Module], nn.Module, int, int]:
    """(trunk stages, res5, C4, C5) of torchvision's ResNet ``name`` with weights from ``pretrained``."""
    net = getattr(torchvision.models, name)(weights=None)
    if pretrained == TORCHVISION_WEIGHTS:
        # IMAGENET1K_V1: the weights torchvision's own detection models start from (weights_backbone)
        weights = torchvision.models.get_model_weights(name)["IMAGENET1K_V1"]
        net.load_state_dict(weights.get_state_dict(progress=False))
    elif pretrained:
        load_torchvision_weights(net, resolve_pretrained(pretrained, arch=name))
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    c4 = net.layer3[-1].conv3.out_channels if name == "resnet50" else net.layer3[-1].conv2.out_channels
    return [stem, net.layer1, net.layer2, net.layer3], net.layer4, c4, 2 * c4


def build_detector(
    *,
    backbone: str,
    num_classes: int,
    pretrained: str = "",
    width: int = 32,
    frozen_bn: bool | None = None,
    freeze_at: int = 0,
    min_size: int = 600,
    max_size: int = 1333,
    rpn: RPNSettings | None = None,
    roi: RoISettings | None = None,
) -> FasterRCNN:
    """A torchvision ``FasterRCNN`` with the C4 design (module docstring).

    In training mode it takes ``(images, targets)`` and returns torchvision's loss dict (``loss_objectness``,
    ``loss_rpn_box_reg``, ``loss_classifier``, ``loss_box_reg``); in eval mode it takes ``images`` and returns one
    dict per image: ``boxes`` (N, 4) xyxy in input pixels, ``labels`` (N,) in 1..K, ``scores`` (N,) sorted
    descending. Images are float (3, H, W) in [0, 1]; target boxes are xyxy with exclusive extents, labels 1..K.

    Args:
        backbone: one of :data:`DETECTOR_BACKBONES`.
        num_classes: K, the object classes (torchvision adds the background).
        pretrained: "" (random init), "torchvision" (ImageNet weights of torchvision, downloaded into the torch cache;
            ResNets only), a local torchvision-layout state dict or a lowlabel ``classify`` run, or ``synth:pretrain``
            (:func:`lowlabel.models.weights.resolve_pretrained`).
        width: ``resnet_small`` only: channels of its first stage.
        frozen_bn: freeze every BatchNorm (None: iff ``pretrained`` is given).
        freeze_at: detectron2's ``FREEZE_AT``: 0 trains everything, 1 freezes the stem, 2 the stem and res2 (their
            BatchNorms become frozen too).
        min_size, max_size: the shorter side every image is resized to and the cap on its longer side;
            ``min_size = 0`` keeps each image's size.
        rpn, roi: proposal and box-head settings (defaults: detectron2's).

    Raises:
        ValueError: an unknown backbone, ``num_classes < 1``, ``freeze_at`` outside 0..2, or torchvision weights for
            ``resnet_small``.
    """
    if backbone not in DETECTOR_BACKBONES:
        raise ValueError(f"unknown detector backbone {backbone!r}; choose one of {', '.join(DETECTOR_BACKBONES)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if not 0 <= freeze_at <= 2:
        raise ValueError(f"freeze_at must be 0, 1 or 2, got {freeze_at}")
    if min_size < 0 or (min_size and max_size < min_size):
        raise ValueError(f"need min_size >= 0 and max_size >= min_size, got {min_size} and {max_size}")
    rpn, roi = rpn or RPNSettings(), roi or RoISettings()
    if backbone == "resnet_small":
        if pretrained == TORCHVISION_WEIGHTS:
            raise ValueError("resnet_small has no torchvision weights; use synth:pretrain, a lowlabel run or ''")
        net = build_backbone(name="resnet_small", width=width, pretrained=pretrained)
        stages, res5 = list(net.body[:4]), net.body[4]
        c4, c5, stride, default_pool = 4 * width, 8 * width, 8, 7
    else:
        stages, res5, c4, c5 = _torchvision_parts(backbone, pretrained)
        stride, default_pool = 16, 14
    trunk = C4Trunk(stages=stages, out_channels=c4, stride=stride)
    head = Res5BoxHead(stage=res5, out_channels=c5)
    if frozen_bn if frozen_bn is not None else bool(pretrained):
        freeze_batchnorm(trunk)
        freeze_batchnorm(head)
    for stage in trunk.stages[:freeze_at]:
        freeze_batchnorm(stage)
        stage.requires_grad_(False)

    anchors = AnchorGenerator(sizes=(tuple(rpn.anchor_sizes),), aspect_ratios=(tuple(rpn.aspect_ratios),))
    pool = MultiScaleRoIAlign(featmap_names=["0"], output_size=roi.pool_size or default_pool, sampling_ratio=0)
    level = int(math.log2(stride))
    pool.scales = [1.0 / stride]  # known, not guessed from the first batch
    pool.map_levels = initLevelMapper(level, level)
    predictor = FastRCNNPredictor(c5, num_classes + 1)
    nn.init.normal_(predictor.cls_score.weight, std=0.01)  # detectron2's FastRCNNOutputLayers init
    nn.init.normal_(predictor.bbox_pred.weight, std=0.001)
    nn.init.zeros_(predictor.cls_score.bias)
    nn.init.zeros_(predictor.bbox_pred.bias)
    model = FasterRCNN(
        trunk,
        num_classes=None,
        min_size=max(min_size, 1),
        max_size=max(max_size, 1),
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(c4, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_train=rpn.pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn.pre_nms_top_n_test,
        rpn_post_nms_top_n_train=rpn.post_nms_top_n_train,
        rpn_post_nms_top_n_test=rpn.post_nms_top_n_test,
        rpn_nms_thresh=rpn.nms_thresh,
        rpn_fg_iou_thresh=rpn.fg_iou_thresh,
        rpn_bg_iou_thresh=rpn.bg_iou_thresh,
        rpn_batch_size_per_image=rpn.batch_size_per_image,
        rpn_positive_fraction=rpn.positive_fraction,
        box_roi_pool=pool,
        box_head=head,
        box_predictor=predictor,
        box_score_thresh=roi.score_thresh,
        box_nms_thresh=roi.nms_thresh,
        box_detections_per_img=roi.detections_per_img,
        box_fg_iou_thresh=roi.fg_iou_thresh,
        box_bg_iou_thresh=roi.fg_iou_thresh,
        box_batch_size_per_image=roi.batch_size_per_image,
        box_positive_fraction=roi.positive_fraction,
    )
    model.transform = _Transform(
        keep_size=min_size == 0,
        min_size=max(min_size, 1),
        max_size=max(max_size, 1),
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        size_divisible=stride,
    )
    return model
