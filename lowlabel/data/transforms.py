"""torchvision.transforms.v2 pipelines that move images, boxes and masks together, and a dict collate.

Every reader calls ``transforms(image, target)`` with ``image`` a ``tv_tensors.Image`` and ``target`` a dict
holding ``tv_tensors.BoundingBoxes`` / ``tv_tensors.Mask`` entries; v2 transforms apply the same geometry to
all of them and pass other entries (labels, ids) through.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from lowlabel.structures import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD


def normalize() -> v2.Compose:
    """uint8 image -> float32 in [0, 1] -> ImageNet normalisation (boxes and masks untouched)."""
    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    """uint8 ``(3, H, W)`` -> float32 ``(x / 255 - mean) / std`` with the ImageNet statistics (the WSSS methods).

    The same normalisation as :func:`normalize`, but torchvision's ``ToDtype`` multiplies by ``1 / 255`` where this
    divides by 255: the two differ by float rounding (7e-7). Training from scratch amplifies that: with
    :func:`normalize` the mlcam quick preset's seed mIoU moves from 19.19 to 19.15. The WSSS results in the README
    were made with this arithmetic, so it stays, next to the other one, until those studies are run again.
    """
    x = torch.as_tensor(image).as_subclass(torch.Tensor).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def wsol_train(*, resize: int = 256, crop: int = 224) -> v2.Compose:
    """wsolevaluation's training transform: resize to a square, random crop, horizontal flip."""
    return v2.Compose(
        [
            v2.Resize((resize, resize), antialias=True),
            v2.RandomCrop(crop),
            v2.RandomHorizontalFlip(),
            normalize(),
            v2.SanitizeBoundingBoxes(labels_getter=None),
        ]
    )


def wsol_eval(*, size: int = 224) -> v2.Compose:
    """wsolevaluation's evaluation transform: resize to ``size x size`` (boxes follow)."""
    return v2.Compose([v2.Resize((size, size), antialias=True), normalize()])


def seg_train(*, crop: int = 224, scale: tuple[float, float] = (0.7, 1.3), base: int = 160) -> v2.Compose:
    """Random rescale + flip + crop for segmentation; padding of masks uses the ignore index 255."""
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX, "others": 0}
    return v2.Compose(
        [
            v2.RandomResize(int(base * scale[0]), int(base * scale[1]) + 1, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomCrop(crop, pad_if_needed=True, fill=fill),
            normalize(),
        ]
    )


def seg_eval(*, size: int | None = None) -> v2.Compose:
    """Optional resize (nearest for masks, as v2 does for ``Mask``) and normalisation."""
    steps: list[Callable] = [v2.Resize(size, antialias=True)] if size else []
    return v2.Compose([*steps, normalize()])


def det_train(*, size: int | None = None, flip: bool = True) -> v2.Compose:
    """Detection training: optional resize, horizontal flip, normalisation, drop degenerate boxes."""
    steps: list[Callable] = [v2.Resize(size, antialias=True)] if size else []
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose([*steps, v2.ToDtype(torch.float32, scale=True), v2.SanitizeBoundingBoxes()])


def collate_dicts(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Collate reader items: tensors of equal shape are stacked, anything else becomes a list."""
    out: dict[str, Any] = {}
    for key in batch[0]:
        values = [item[key] for item in batch]
        if all(isinstance(v, torch.Tensor) for v in values) and len({tuple(v.shape) for v in values}) == 1:
            out[key] = torch.stack([v.as_subclass(torch.Tensor) for v in values])
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = torch.tensor(values)
        else:
            out[key] = values
    return out
