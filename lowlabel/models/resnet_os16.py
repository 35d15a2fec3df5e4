"""Output-stride-16 ResNets exposing their four stages, with optional frozen ("fixed") BatchNorm.

SIPE and IRN use a ResNet-50 whose last stage keeps stride 1 without dilation (strides 2, 2, 2, 1), so the
deepest features are at 1/16 of the input, and BatchNorm always in eval mode (``FixedBatchNorm``: the running
statistics of the pretrained model are used, the affine parameters still train). The same builder gives
the small ResNet-18 used on ShapesWorld, where training from scratch needs ordinary (training-mode) BN.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
import torchvision
from torch import Tensor, nn

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
        if pretrained:
            _load_into(net, _load_pretrained(arch, pretrained), f"{pretrained} ({arch})")
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


def _load_pretrained(arch: str, pretrained: str) -> dict[str, Tensor]:
    if pretrained == "torchvision":
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        return weights.get_state_dict(progress=False)
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling, truncated files and safetensors headers fail in many ways
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"{path}: cannot read pretrained weights ({type(err).__name__}: {first})") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict (a mapping of parameter names to tensors)")
    return state


def _load_into(net: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Load ``state`` into the torchvision ResNet ``net``, one-line errors naming the first wrong keys or shapes.

    The classifier ``fc.*`` is not part of the backbone: it may be missing (self-supervised or detection
    checkpoints) or have any number of classes, and is not loaded.
    """
    own = {k: v for k, v in net.state_dict().items() if not k.startswith("fc.")}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{source}: not a torchvision ResNet state dict of this size: {len(missing)} missing keys "
                         f"(e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. {unexpected[:2]})")
    for key, value in state.items():
        if value.shape != own[key].shape:
            raise ValueError(f"{source}: {key} has shape {tuple(value.shape)}, the model expects "
                             f"{tuple(own[key].shape)}")
    net.load_state_dict(state, strict=False)
