"""CAM head (features -> 1x1 conv class maps -> GAP logits) and CAM post-processing.

The post-processing follows the wsolevaluation protocol (``CAMComputer`` in clovaai/wsolevaluation
``inference.py``): take the class map, min-max normalise it, resize it bicubically to 224x224 with
OpenCV, and min-max normalise again; a constant or NaN map becomes all zeros.

Used by the WSOL methods (``cam``, ``da_wsol``) and by the multi-label CAM baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import nn

from lowlabel.models.backbones import CAMBackbone


@dataclass
class CamOutput:
    """What :class:`CAMNet` returns.

    Attributes:
        logits: ``(B, C)`` class scores (GAP of the class maps, bias included).
        features: ``(B, D, h, w)`` pixel features P (the DA-WSOL target domain).
        pooled: ``(B, D)`` image features s = GAP(P) (the DA-WSOL source domain).
    """

    logits: torch.Tensor
    features: torch.Tensor
    pooled: torch.Tensor


class CAMHead(nn.Module):
    """A 1x1 conv classifier shared by images (after GAP) and pixels (CAM).

    Because the 1x1 conv is linear, ``logits = conv(GAP(P)) = GAP(conv(P))``; the logits are computed
    on the pooled features (cheaper), the CAM on the pixel features.

    Args:
        in_channels: feature channels D.
        num_classes: number of classes C.
    """

    def __init__(self, *, in_channels: int, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.conv = nn.Conv2d(in_channels, num_classes, kernel_size=1, bias=True)
        nn.init.xavier_uniform_(self.conv.weight)  # DA-WSOL CAMClassifier: Xavier init, bias
        nn.init.zeros_(self.conv.bias)

    def logits(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` pooled features -> ``(B, C)`` logits."""
        return self.conv(pooled[:, :, None, None]).flatten(1)  # (B, C, 1, 1) -> (B, C)

    def cams(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, D, h, w)`` features -> ``(B, C, h, w)`` class activation maps (bias included)."""
        return self.conv(features)


class CAMNet(nn.Module):
    """Backbone + CAM head.

    Args:
        backbone: a :class:`~lowlabel.models.backbones.CAMBackbone`.
        num_classes: number of classes C.
    """

    def __init__(self, *, backbone: CAMBackbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = CAMHead(in_channels=backbone.num_features, num_classes=num_classes)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> CamOutput:
        features = self.backbone.forward_features(x)  # (B, D, h, w)
        pooled = features.mean(dim=(2, 3))  # (B, D)
        return CamOutput(logits=self.head.logits(pooled), features=features, pooled=pooled)

    def cams(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (B, C), cams (B, C, h, w))`` for an image batch."""
        out = self(x)
        return out.logits, self.head.cams(out.features)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` classes (timm contract)."""
        device = self.head.conv.weight.device
        self.head = CAMHead(in_channels=self.backbone.num_features, num_classes=num_classes).to(device)
        self.num_classes = num_classes

    def param_groups(self, *, lr: float, new_layer_ratio: float) -> list[dict]:
        """SGD groups: the pretrained body at ``lr``; added layers and the head at ``lr * new_layer_ratio``."""
        new = list(self.backbone.extra.parameters()) + list(self.head.parameters())
        return [{"params": list(self.backbone.body.parameters()), "lr": lr},
                {"params": new, "lr": lr * new_layer_ratio}]


def select_class_cams(cams: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Pick one map per image: ``cams (B, C, h, w)``, ``classes (B,)`` -> ``(B, h, w)``."""
    index = classes.long().view(-1, 1, 1, 1).expand(-1, 1, *cams.shape[2:])  # (B, 1, h, w)
    return cams.gather(1, index).squeeze(1)


def minmax_per_map(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each ``(h, w)`` map of a ``(B, h, w)`` batch (wsolevaluation ``normalize_tensor``).

    A constant map divides 0 by 0 and gives NaN, as upstream; :func:`scoremaps_from_cams` turns it into 0.
    """
    flat = maps.flatten(1)  # (B, h*w)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    return ((flat - lo) / (hi - lo)).view_as(maps)


def normalize_scoremap_np(cam: np.ndarray) -> np.ndarray:
    """Second min-max normalisation of a resized map; NaN or all-zero maps become zeros."""
    if np.isnan(cam).any() or cam.max() == 0:
        return np.zeros_like(cam)
    cam = cam - cam.min()
    top = cam.max()
    return cam / top if top > 0 else np.zeros_like(cam)


def scoremaps_from_cams(cams: torch.Tensor, size: int | tuple[int, int] = 224) -> np.ndarray:
    """wsolevaluation score maps: ``(B, h, w)`` class maps -> ``(B, H, W)`` float32 in [0, 1].

    Args:
        cams: selected class maps (raw CAM values).
        size: output size; an int means square (the protocol uses 224); a tuple is ``(H, W)``.
    """
    out_h, out_w = (size, size) if isinstance(size, int) else size
    normed = minmax_per_map(cams.detach().float()).cpu().numpy()
    result = np.empty((normed.shape[0], out_h, out_w), dtype=np.float32)
    for i, cam in enumerate(normed):
        resized = cv2.resize(cam, (out_w, out_h), interpolation=cv2.INTER_CUBIC)  # cv2 takes (W, H)
        result[i] = normalize_scoremap_np(resized)
    return result
