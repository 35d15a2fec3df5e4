"""Output-stride-16 ResNets exposing their four stages, with optional frozen ("fixed") BatchNorm.

SIPE and IRN use a ResNet-50 whose last stage keeps stride 1 without dilation (strides 2, 2, 2, 1), so the
deepest features are at 1/16 of the input, and BatchNorm always in eval mode (``FixedBatchNorm``: the running
statistics of the pretrained model are used, the affine parameters still train). The same builder gives
the small ResNet-18 used on ShapesWorld, where training from scratch needs ordinary (training-mode) BN.
"""

from __future__ import annotations

from typing import Literal

import torchvision
from torch import Tensor, nn

from lowlabel.models.weights import load_torchvision_weights, resolve_pretrained

Arch = Literal["resnet18", "resnet34", "resnet50", "resnet101"]
STAGE_CHANNELS: dict[str, tuple[int, int, int, int]] = {
    "resnet18": (64, 128, 256, 512),
    "resnet34": (64, 128, 256, 512),
    "resnet50": (256, 512, 1024, 2048),
    "resnet101": (256, 512, 1024, 2048),
}


class FixedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that always normalises with its running statistics (IRN's ``FixedBatchNorm``)."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, training=False, eps=self.eps
        )


class StagedResNet(nn.Module):
    """A torchvision ResNet cut into ``stem`` + four stages, with configurable output stride.

    Args:
        arch: torchvision ResNet name.
        output_stride: 16 (last stage stride 1, no dilation, as IRN/SIPE) or 32 (the usual ResNet).
        frozen_bn: use :class:`FixedBatchNorm2d` (the paper, with pretrained weights) instead of ``BatchNorm2d``.
        pretrained: "" (random init), "torchvision" (the torchvision ImageNet weights, downloaded into the
            torch cache the normal way) or a path to a state dict in torchvision key layout (``.pth`` or
            ``.safetensors``; the ``fc`` head is ignored).
        freeze_stem: freeze conv1 and bn1 (the official code does).
    """

    def __init__(
        self,
        *,
        arch: Arch = "resnet50",
        output_stride: Literal[16, 32] = 16,
        frozen_bn: bool = True,
        pretrained: str = "",
        freeze_stem: bool = True,
    ) -> None:
        super().__init__()
        if arch not in STAGE_CHANNELS:
            raise ValueError(f"unknown arch {arch!r}; choose one of {sorted(STAGE_CHANNELS)}")
        if output_stride not in (16, 32):
            raise ValueError(f"output_stride must be 16 or 32, got {output_stride}")
        norm = FixedBatchNorm2d if frozen_bn else nn.BatchNorm2d
        net = getattr(torchvision.models, arch)(weights=None, norm_layer=norm)
        if pretrained == "torchvision":
            net.load_state_dict(torchvision.models.get_model_weights(arch).DEFAULT.get_state_dict(progress=False))
        elif pretrained:
            load_torchvision_weights(net, resolve_pretrained(pretrained, arch=arch))
        if output_stride == 16:
            _remove_last_stride(net.layer4)
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        # The same contract as lowlabel.models.backbones.CAMBackbone: body[0] is the stem, body[1:] the stages.
        self.body = nn.ModuleList([stem, net.layer1, net.layer2, net.layer3, net.layer4])
        self.extra = nn.Identity()
        self.stage_channels = STAGE_CHANNELS[arch]
        self.num_features = self.stage_channels[-1]
        self.feature_stride = output_stride
        if freeze_stem:
            for p in list(net.conv1.parameters()) + list(net.bn1.parameters()):
                p.requires_grad_(False)

    def forward_intermediates(self, x: Tensor, indices: list[int] | None = None) -> tuple[Tensor, list[Tensor]]:
        """Final features and the outputs of the body entries named by ``indices`` (all if None)."""
        wanted = set(range(len(self.body))) if indices is None else {i % len(self.body) for i in indices}
        out = []
        for i, block in enumerate(self.body):
            x = block(x)
            if i in wanted:
                out.append(x)
        return x, out

    def forward_features(self, x: Tensor) -> Tensor:
        """The last stage's features (timm's ``forward_features`` contract)."""
        for block in self.body:
            x = block(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_features(x)


def _remove_last_stride(layer: nn.Sequential) -> None:
    """Set the first block's stride to 1 (conv and downsample), keeping dilation 1 as IRN does."""
    block = layer[0]
    for conv in (getattr(block, "conv1", None), getattr(block, "conv2", None)):
        if isinstance(conv, nn.Conv2d) and conv.stride != (1, 1):
            conv.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)
