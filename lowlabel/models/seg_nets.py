"""Networks of the weakly-supervised segmentation pipeline.

* :class:`MultiLabelCAMNet`: a backbone with a 1x1 multi-label CAM classifier, and optionally SIPE's side 1x1
  convs that build hierarchical features. The multi-label CAM baseline (``mlcam``) and SIPE (``sipe``) share it.
* :class:`SegNet`: torchvision's DeepLabV3, the segmentation stage (``seg``) trained on pseudo masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import get_model_weights
from torchvision.models import segmentation as tvseg
from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

from lowlabel.losses.sipe import EPS
from lowlabel.models.backbones import build_backbone
from lowlabel.models.resnet_os16 import FixedBatchNorm2d, StagedResNet
from lowlabel.models.weights import load_torchvision_weights, resolve_pretrained

SEG_ARCHS = ("deeplabv3_small", "deeplabv3_resnet50", "deeplabv3_resnet101")


@dataclass
class CAMOutput:
    """What :class:`MultiLabelCAMNet` returns: raw CAM, last-stage features, hierarchical features (or None)."""

    cam: Tensor  # (B, K, h, w)
    x4: Tensor  # (B, D, h, w)
    hier: Tensor | None  # (B, sum(side_channels), h, w)


class MultiLabelCAMNet(nn.Module):
    """Backbone + 1x1 classifier (no bias) + optional side convs for hierarchical features.

    Args:
        backbone: a module with ``body`` (stem then four stages) and ``num_features``.
        num_classes: K foreground classes.
        side_channels: widths of side1..side4, or None for a plain CAM network.
        detach_stage: stop the gradient after this stage (0 = never). The stem and the stages up to it then get
            no gradient, so their parameters are frozen (``requires_grad`` off): no optimizer holds them and DDP
            does not wait for their gradients. BatchNorm statistics there still update in training mode.
    """

    def __init__(
        self, *, backbone: nn.Module, num_classes: int, side_channels: tuple[int, ...] | None, detach_stage: int
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.detach_stage = detach_stage
        if detach_stage > 0:
            for block in list(backbone.body)[: detach_stage + 1]:
                block.requires_grad_(False)
        self.classifier = nn.Conv2d(backbone.num_features, num_classes, 1, bias=False)
        self.sides: nn.ModuleList | None = None
        if side_channels is not None:
            stage_channels = _stage_channels(backbone)
            self.sides = nn.ModuleList(
                [nn.Conv2d(c_in, c_out, 1, bias=False) for c_in, c_out in zip(stage_channels, side_channels)]
            )

    def new_parameters(self) -> list[nn.Parameter]:
        """The layers added on the backbone (trained at ``lr x lr_mult``)."""
        mods: list[nn.Module] = [self.classifier] + ([self.sides] if self.sides is not None else [])
        return [p for m in mods for p in m.parameters()]

    def forward(self, x: Tensor) -> CAMOutput:
        feats = []
        h = x
        for i, block in enumerate(self.backbone.body):
            h = block(h)
            if i >= 1:
                if i == self.detach_stage:
                    h = h.detach()
                feats.append(h)
        x4 = self.backbone.extra(h)
        cam = self.classifier(x4)
        hier = None
        if self.sides is not None:
            size = feats[2].shape[2:]  # x3's size (stride 16 in the paper)
            parts = []
            for side, f in zip(self.sides, feats):
                s = side(f.detach())
                s = s / (s.norm(dim=1, keepdim=True) + EPS)
                parts.append(F.interpolate(s, size=size, mode="bilinear", align_corners=False))
            hier = torch.cat(parts, dim=1)  # (B, sum(side_channels), h, w)
        return CAMOutput(cam=cam, x4=x4, hier=hier)


def _stage_channels(backbone: nn.Module) -> list[int]:
    """Output channels of body[1..4], found with one tiny forward pass in eval mode."""
    if hasattr(backbone, "stage_channels"):
        return list(backbone.stage_channels)
    was_training = backbone.training
    backbone.eval()
    with torch.no_grad():
        h = torch.zeros(1, 3, 64, 64)
        chans = []
        for i, block in enumerate(backbone.body):
            h = block(h)
            if i >= 1:
                chans.append(h.shape[1])
    backbone.train(was_training)
    if len(chans) != 4:
        raise ValueError(f"side features need a backbone with a stem and 4 stages, got {len(chans)} stages")
    return chans


def build_staged_backbone(name: str, *, pretrained: str = "", frozen_bn: bool = False, freeze_stem: bool = False,
                          width: int = 32) -> nn.Module:
    """A backbone with ``body`` (stem then four stages), ``extra`` and ``num_features``.

    Args:
        name: ``resnet{18,34,50,101}_os16`` (IRN/SIPE's stride-16 ResNets, :mod:`lowlabel.models.resnet_os16`)
            or a :mod:`lowlabel.models.backbones` name (``resnet_small``: the stride-8 ShapesWorld net).
        pretrained: see :class:`~lowlabel.models.resnet_os16.StagedResNet` and
            :func:`~lowlabel.models.backbones.build_backbone`.
        frozen_bn, freeze_stem: IRN's fixed BatchNorm (running statistics of the pretrained weights) and a
            frozen stem (conv1/bn1; ``resnet_small``: its conv stem).
        width: ``resnet_small`` only: first-stage channels.
    """
    if name.endswith("_os16"):
        return StagedResNet(arch=name[: -len("_os16")], output_stride=16, frozen_bn=frozen_bn, pretrained=pretrained,
                            freeze_stem=freeze_stem)
    net = build_backbone(name=name, pretrained=pretrained, width=width)
    if frozen_bn:  # as the _os16 ResNets: the pretrained statistics, affine parameters still trained
        _fix_batchnorm(net.body)
    if freeze_stem:
        net.body[0].requires_grad_(False)
    return net


def _fix_batchnorm(module: nn.Module) -> None:
    """Replace every ``BatchNorm2d`` under ``module`` by a :class:`FixedBatchNorm2d` holding the same state."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, FixedBatchNorm2d):
            fixed = FixedBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
            fixed.load_state_dict(child.state_dict())
            setattr(module, name, fixed)
        else:
            _fix_batchnorm(child)


class _FeatureDict(nn.Module):
    """Adapts a ``forward_features`` backbone to DeepLabV3's ``{"out": features}`` interface."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.body = backbone

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"out": self.body.forward_features(x)}


class SegNet(nn.Module):
    """torchvision DeepLabV3 returning logits at the input size; ``new_parameters`` = the head.

    Args:
        arch: one of :data:`SEG_ARCHS`: torchvision's ``deeplabv3_resnet50`` / ``deeplabv3_resnet101`` (output
            stride 8), or ``deeplabv3_small`` (a ResNet-18 with output stride 16 under ``DeepLabHead``).
        num_classes: classes including the background.
        pretrained_backbone: "" (random init), "torchvision" (ImageNet weights, downloaded into the torch cache
            the normal way) or a local torchvision-layout ResNet state dict (``.pth``/``.safetensors``; ``fc``
            ignored).
    """

    def __init__(self, *, arch: str, num_classes: int, pretrained_backbone: str = "") -> None:
        super().__init__()
        if arch not in SEG_ARCHS:
            raise ValueError(f"unknown segmentation arch {arch!r}; choose one of {', '.join(SEG_ARCHS)}")
        if arch == "deeplabv3_small":
            backbone = StagedResNet(arch="resnet18", output_stride=16, frozen_bn=False, freeze_stem=False,
                                    pretrained=pretrained_backbone)
            self.net = DeepLabV3(_FeatureDict(backbone), DeepLabHead(backbone.num_features, num_classes), None)
        else:
            resnet = arch.split("_")[1]
            weights = get_model_weights(resnet).DEFAULT if pretrained_backbone == "torchvision" else None
            self.net = getattr(tvseg, arch)(weights=None, weights_backbone=weights, num_classes=num_classes,
                                            aux_loss=False)
            if pretrained_backbone and pretrained_backbone != "torchvision":
                load_torchvision_weights(self.net.backbone, resolve_pretrained(pretrained_backbone, arch=resnet))

    def new_parameters(self) -> list[nn.Parameter]:
        return list(self.net.classifier.parameters())

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)["out"]
