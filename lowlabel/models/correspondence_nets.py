"""The networks of ContrastCorr: the frame encoder whose features give the affinities, and the colour autoencoder
whose features the affinities carry from frame to frame.

* :func:`frame_encoder`: ``resnet18_os8`` is the paper's (UVC's) ResNet-18 with layer3 and layer4 at stride 1, so
  the features are 512-d at 1/8 of the input; ``resnet_small`` is the toolkit's small stride-8 ResNet for
  ShapesWorld. Both accept ``pretrained`` weights (torchvision layout, a lowlabel run, or ``synth:pretrain``).
* :class:`ColourAutoencoder`: LAB image -> (C, H/8, W/8) -> LAB image. The official code loads UVC's pretrained
  VGG autoencoder (frozen); here it is a first training stage on the same unlabeled frames, then frozen.
"""

from __future__ import annotations

import torchvision
from torch import Tensor, nn

from lowlabel.models.backbones import build_backbone
from lowlabel.models.weights import load_torchvision_weights, resolve_pretrained

ENCODERS = ("resnet18_os8", "resnet_small")


class _ResNet18OS8(nn.Module):
    """torchvision's ResNet-18 up to layer4 with the stride of layer3 and layer4 removed: (512, H/8, W/8)."""

    def __init__(self, pretrained: str = "") -> None:
        super().__init__()
        net = torchvision.models.resnet18(weights=None)
        if pretrained:
            load_torchvision_weights(net, resolve_pretrained(pretrained, arch="resnet18"))
        for layer in (net.layer3, net.layer4):
            block = layer[0]
            block.conv1.stride = (1, 1)
            block.downsample[0].stride = (1, 1)
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                                  net.layer4)
        self.num_features = 512

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class _SmallEncoder(nn.Module):
    def __init__(self, width: int, pretrained: str) -> None:
        super().__init__()
        self.backbone = build_backbone(name="resnet_small", width=width, pretrained=pretrained)
        self.num_features = self.backbone.num_features

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone.forward_features(x)


def frame_encoder(name: str, *, pretrained: str = "", width: int = 32) -> nn.Module:
    """The frame encoder ``name`` (one of :data:`ENCODERS`); output stride 8, ``num_features`` channels."""
    if name == "resnet18_os8":
        return _ResNet18OS8(pretrained)
    if name == "resnet_small":
        return _SmallEncoder(width, pretrained)
    raise ValueError(f"unknown frame encoder {name!r}; choose one of {', '.join(ENCODERS)}")


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))


class ColourAutoencoder(nn.Module):
    """LAB (3, H, W) -> ``channels`` features at 1/8 -> LAB, with H and W multiples of 8.

    Encoder: three stages of two 3 x 3 convolutions, each followed by 2 x 2 max pooling (widths C/4, C/2, C);
    decoder: the mirror with nearest up-sampling, and a linear 3 x 3 output convolution.
    """

    def __init__(self, channels: int = 256) -> None:
        super().__init__()
        if channels % 4:
            raise ValueError(f"colour autoencoder channels must be a multiple of 4, got {channels}")
        widths = (channels // 4, channels // 2, channels)
        enc: list[nn.Module] = []
        cin = 3
        for width in widths:
            enc += [_conv(cin, width), _conv(width, width), nn.MaxPool2d(2)]
            cin = width
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = []
        for width in reversed(widths):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(cin, width), _conv(width, width)]
            cin = width
        dec.append(nn.Conv2d(cin, 3, 3, padding=1))
        self.decoder = nn.Sequential(*dec)
        self.channels = channels

    def encode(self, lab: Tensor) -> Tensor:
        return self.encoder(lab)

    def decode(self, feats: Tensor) -> Tensor:
        return self.decoder(feats)

    def forward(self, lab: Tensor) -> Tensor:
        return self.decode(self.encode(lab))
