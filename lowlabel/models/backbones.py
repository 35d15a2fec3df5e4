"""CAM-ready backbones with timm's feature contract.

Every backbone here maps an image batch ``(B, 3, H, W)`` to pixel features ``(B, D, h, w)`` and
exposes:

* ``num_features`` (D) and ``feature_stride`` (H / h);
* ``forward_features(x)``: the final feature map, the input of a CAM head;
* ``forward_intermediates(x, indices=None)``: ``(final, [stage outputs])`` as in timm;
* ``body`` (layers that a pretrained checkpoint initialises) and ``extra`` (layers added for CAM,
  trained with a larger learning rate, as wsolevaluation does).

The benchmark backbones are the CAM-adapted ones of the WSOL benchmark (wsolevaluation, Choe et
al. CVPR 2020), rebuilt here from torchvision modules:

* ``resnet50``: layer4 with stride 1 (layer3 too with ``large_feature_map``): stride 8 or 16.
* ``vgg16``: VGG16 without its last max-pool, plus ``conv6`` (3x3, 512 -> 1024, ReLU): stride 16.
* ``inception_v3``: up to Mixed_6e with padded stem convs and a stride-1 Mixed_6a (28x28 at 224
  with ``large_feature_map``), plus the SPG-style head (two 3x3 convs to 1024, ReLU, dropout 0.5).
* ``resnet_small``: a 4-stage, one-block-per-stage ResNet (stride 8, D=256) for ShapesWorld on CPU.

``pretrained`` is a local file (``.pth``/``.pt`` state dict or ``.safetensors``) in torchvision's
key layout; nothing is ever downloaded. ``resnet_small`` has no public weights: its ``pretrained`` is a
lowlabel run's checkpoint or a ``save_pretrained`` folder whose network has a ``resnet_small`` backbone
(e.g. a ``lowlabel train cam`` run on ShapesWorld ``wsol/``), whose ``backbone.body.*`` weights are loaded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception_v3, resnet50, vgg16
from torchvision.models.resnet import BasicBlock

from lowlabel.models.weights import load_lowlabel_body, load_torchvision_weights, resolve_pretrained

BACKBONES = ("resnet50", "vgg16", "inception_v3", "resnet_small")


class CAMBackbone(nn.Module):
    """A feature extractor: ``body`` (stages, pretrained part) followed by ``extra`` (new layers).

    Args:
        stages: the body as a list of stages; ``forward_intermediates`` returns their outputs.
        extra: layers appended for CAM (``nn.Identity()`` when none).
        num_features: channels D of the final feature map.
        feature_stride: input size divided by the feature-map size (approximate for Inception).
    """

    def __init__(self, *, stages: list[nn.Module], extra: nn.Module, num_features: int, feature_stride: int) -> None:
        super().__init__()
        self.body = nn.ModuleList(stages)
        self.extra = extra
        self.num_features = num_features
        self.feature_stride = feature_stride

    def forward_intermediates(
        self, x: torch.Tensor, indices: list[int] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Final features and the outputs of the body stages named by ``indices`` (all if None)."""
        wanted = set(range(len(self.body))) if indices is None else {i % len(self.body) for i in indices}
        intermediates = []
        for i, stage in enumerate(self.body):
            x = stage(x)
            if i in wanted:
                intermediates.append(x)
        return self.extra(x), intermediates

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel features ``(B, D, h, w)``."""
        for stage in self.body:
            x = stage(x)
        return self.extra(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def build_backbone(*, name: str, pretrained: str = "", large_feature_map: bool = True, width: int = 32) -> CAMBackbone:
    """The backbone ``name`` (one of :data:`BACKBONES`), randomly initialised or loaded from a local file.

    Args:
        name: ``resnet50``, ``vgg16``, ``inception_v3`` or ``resnet_small``.
        pretrained: path of a torchvision-layout state dict; ``""`` = random init.
        large_feature_map: ResNet50 layer3 stride 1 (stride 8 overall instead of 16); Inception
            Mixed_6a stride 1. Ignored by the others.
        width: ``resnet_small`` only: channels of its first stage (then x2, x4, x8; D = 8 * width).
    """
    pretrained = resolve_pretrained(pretrained, arch=name, width=width if name == "resnet_small" else None)
    if name == "resnet50":
        return _resnet50(pretrained, large_feature_map)
    if name == "vgg16":
        return _vgg16(pretrained)
    if name == "inception_v3":
        return _inception_v3(pretrained, large_feature_map)
    if name == "resnet_small":
        net = _resnet_small((width, 2 * width, 4 * width, 8 * width))
        if pretrained:
            load_lowlabel_body(net, pretrained)
        return net
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")


def _resnet50(pretrained: str, large_feature_map: bool) -> CAMBackbone:
    net = resnet50(weights=None)
    if pretrained:
        load_torchvision_weights(net, pretrained)
    # wsolevaluation ResNet50-CAM: layer4 stride 1, layer3 stride 1 iff large_feature_map.
    _set_first_block_stride(net.layer4, 1)
    if large_feature_map:
        _set_first_block_stride(net.layer3, 1)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    return CAMBackbone(stages=[stem, net.layer1, net.layer2, net.layer3, net.layer4], extra=nn.Identity(),
                       num_features=2048, feature_stride=8 if large_feature_map else 16)


def _set_first_block_stride(layer: nn.Sequential, stride: int) -> None:
    block = layer[0]  # torchvision Bottleneck keeps the stride on conv2 (ResNet v1.5), as wsolevaluation
    block.conv2.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


def _vgg16(pretrained: str) -> CAMBackbone:
    net = vgg16(weights=None)
    if pretrained:
        load_torchvision_weights(net, pretrained)
    feats = list(net.features.children())[:-1]  # drop pool5: stride 16, 14x14 at 224 (wsolevaluation 'cam' cfg)
    # Stages end after each remaining max-pool: indices of the pools in torchvision's vgg16.features.
    cuts = [0, 5, 10, 17, 24, len(feats)]
    stages = [nn.Sequential(*feats[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
    conv6 = nn.Sequential(nn.Conv2d(512, 1024, kernel_size=3, padding=1), nn.ReLU(inplace=True))
    return CAMBackbone(stages=stages, extra=conv6, num_features=1024, feature_stride=16)


class _StrideOneInceptionB(nn.Module):
    """torchvision's InceptionB (Mixed_6a) with stride 1 and padding 1 (keeps the 28x28 map)."""

    def __init__(self, block: nn.Module) -> None:
        super().__init__()
        self.branch3x3 = block.branch3x3
        self.branch3x3dbl_1 = block.branch3x3dbl_1
        self.branch3x3dbl_2 = block.branch3x3dbl_2
        self.branch3x3dbl_3 = block.branch3x3dbl_3
        for conv in (self.branch3x3.conv, self.branch3x3dbl_3.conv):
            conv.stride, conv.padding = (1, 1), (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, F.max_pool2d(x, kernel_size=3, stride=1, padding=1)], dim=1)


def _inception_v3(pretrained: str, large_feature_map: bool) -> CAMBackbone:
    net = inception_v3(weights=None, aux_logits=False, init_weights=True)
    if pretrained:
        load_torchvision_weights(net, pretrained)
    for conv in (net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_4a_3x3):
        conv.conv.padding = (1, 1)  # SPG/wsolevaluation pad the stem: 224 -> 112 -> 56 -> 28
    stem = nn.Sequential(net.Conv2d_1a_3x3, net.Conv2d_2a_3x3, net.Conv2d_2b_3x3,
                         nn.MaxPool2d(3, stride=2, padding=1), net.Conv2d_3b_1x1, net.Conv2d_4a_3x3,
                         nn.MaxPool2d(3, stride=2, padding=1))
    mixed5 = nn.Sequential(net.Mixed_5b, net.Mixed_5c, net.Mixed_5d)
    mixed6a = _StrideOneInceptionB(net.Mixed_6a) if large_feature_map else net.Mixed_6a
    mixed6 = nn.Sequential(mixed6a, net.Mixed_6b, net.Mixed_6c, net.Mixed_6d, net.Mixed_6e)
    spg_head = nn.Sequential(  # SPG-style head (methods.md 2a): 768 -> 1024 -> 1024, 3x3, ReLU, dropout 0.5
        nn.Conv2d(768, 1024, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.Dropout(0.5),
        nn.Conv2d(1024, 1024, kernel_size=3, padding=1), nn.ReLU(inplace=True), nn.Dropout(0.5),
    )
    return CAMBackbone(stages=[stem, mixed5, mixed6], extra=spg_head, num_features=1024,
                       feature_stride=8 if large_feature_map else 16)


def _resnet_small(widths: tuple[int, ...] = (32, 64, 128, 256)) -> CAMBackbone:
    """ResNet-10-like: conv stem (stride 2), one BasicBlock per stage, strides 1, 2, 2, 1 -> stride 8."""
    stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False),
                         nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
    stages: list[nn.Module] = [stem]
    inplanes = widths[0]
    for planes, stride in zip(widths, (1, 2, 2, 1)):
        downsample = None
        if stride != 1 or inplanes != planes:
            conv = nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False)
            downsample = nn.Sequential(conv, nn.BatchNorm2d(planes))
        stages.append(BasicBlock(inplanes, planes, stride=stride, downsample=downsample))
        inplanes = planes
    for m in nn.ModuleList(stages).modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return CAMBackbone(stages=stages, extra=nn.Identity(), num_features=widths[-1], feature_stride=8)
