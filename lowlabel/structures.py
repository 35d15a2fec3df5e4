"""Box, mask and file-format conventions, in one place.

Every reader, metric and writer in lowlabel converts at its border to the internal
conventions below, so that no module has to guess:

* **Boxes** are ``float`` tensors/arrays of shape ``(N, 4)`` in ``xyxy`` order, in pixel
  units of the image they belong to, 0-based. Whether ``x1`` is inclusive depends on the
  protocol and is stated by the function that consumes them:

  - wsolevaluation treats ``x1, y1`` as *inclusive* pixel indices (IoU uses ``+1``);
  - VOC XML stores 1-based inclusive corners (``xmin=1`` is the first pixel);
  - COCO JSON stores ``[x, y, w, h]`` with float, exclusive extents.

* **Masks** are ``uint8`` arrays ``(H, W)``; class-index masks use :data:`IGNORE_INDEX`
  (255) for void/boundary pixels, as PASCAL VOC and DAVIS do.
* **Images** enter models as ``float32`` tensors ``(B, 3, H, W)`` normalised with the
  ImageNet statistics below; ``predict_batch`` takes them as ``uint8`` tensors ``(3, H, W)``.
* **Predictions** leave methods' ``predict_batch`` as the small dataclasses at the end of this
  module (:class:`Localization`, :class:`Segmentation`), one per input image, at the input's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

IGNORE_INDEX = 255

# PASCAL VOC's 20 foreground classes in label order (class id = index + 1; 0 is background).
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
# MS COCO's 80 object classes in the order of their contiguous ids (the WSSS COCO-14 label order).
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def voc_palette(num_colors: int = 256) -> list[int]:
    """The PASCAL VOC colour map as a flat ``[r0, g0, b0, r1, ...]`` list for ``PIL.Image.putpalette``.

    Class ``c`` gets the colour whose bits interleave the bits of ``c`` (the devkit's ``labelcolormap``);
    index 255 is ``(224, 224, 192)``, the cream boundary colour of ``SegmentationClass``.
    """
    palette: list[int] = []
    for c in range(num_colors):
        r = g = b = 0
        cid = c
        for shift in range(7, -1, -1):
            r |= ((cid >> 0) & 1) << shift
            g |= ((cid >> 1) & 1) << shift
            b |= ((cid >> 2) & 1) << shift
            cid >>= 3
        palette += [r, g, b]
    return palette


def coco_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """COCO ``[x, y, w, h]`` (N, 4) -> ``[x0, y0, x0 + w, y0 + h]`` (N, 4), exclusive extents."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def xyxy_to_coco(boxes: np.ndarray) -> np.ndarray:
    """``[x0, y0, x1, y1]`` (N, 4), exclusive extents -> COCO ``[x, y, w, h]`` (N, 4)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def voc_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """VOC XML 1-based inclusive ``[xmin, ymin, xmax, ymax]`` -> 0-based inclusive ``xyxy``."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) - 1.0


def xyxy_to_voc(boxes: np.ndarray) -> np.ndarray:
    """0-based inclusive ``xyxy`` -> VOC XML 1-based inclusive corners."""
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4) + 1.0


def check_boxes(boxes: np.ndarray, where: str = "boxes") -> np.ndarray:
    """Return ``boxes`` as a float64 (N, 4) array, raising ``ValueError`` on NaN or ``x1 < x0``/``y1 < y0``."""
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not np.isfinite(arr).all():
        raise ValueError(f"{where}: non-finite box coordinate")
    bad = np.flatnonzero((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1]))
    if bad.size:
        raise ValueError(f"{where}: box {bad[0]} has x1 < x0 or y1 < y0: {arr[bad[0]].tolist()}")
    return arr


@dataclass
class Localization:
    """One image's weakly-supervised object localization (``cam``, ``da_wsol``).

    Attributes:
        heatmap: (H, W) float32 in [0, 1], the CAM of ``label`` at the input image's size.
        boxes: (N, 4) float32 xyxy, 0-based inclusive pixel corners (wsolevaluation), one per contour of the
            heat map above the method's threshold; the first is the largest.
        label: the predicted class index.
        score: its softmax probability.
    """

    heatmap: torch.Tensor
    boxes: torch.Tensor
    label: int
    score: float


@dataclass
class Image:
    """One output image (``contrastcorr_ae``: a reconstruction; translators: a translated image).

    Attributes:
        image: (3, H, W) uint8 RGB at the input image's size.
    """

    image: torch.Tensor


@dataclass
class Classification:
    """One image's class prediction (``classify``).

    Attributes:
        label: the predicted class index.
        score: its softmax probability.
        probs: (K,) float32 softmax probabilities of every class.
    """

    label: int
    score: float
    probs: torch.Tensor


@dataclass
class Segmentation:
    """One image's semantic segmentation (``mlcam``, ``sipe``: pseudo masks; ``seg``: a network's prediction).

    Attributes:
        mask: (H, W) uint8 class ids at the input image's size, 0 = background (VOC's convention).
        seed: (H, W) uint8 seeds before refinement (CAM-based methods), else None.
        labels: (K,) float multi-hot foreground classes the mask was restricted to, else None.
    """

    mask: torch.Tensor
    seed: torch.Tensor | None = None
    labels: torch.Tensor | None = None


@dataclass
class Detections:
    """One image's object detections (``detector``; translators report the frozen detector's on their output).

    Attributes:
        boxes: (N, 4) float32 xyxy in the input image's pixels, ``x1, y1`` exclusive (torchvision's and COCO's
            extents); the VOC AP scorer takes inclusive corners ``x0, y0, x1 - 1, y1 - 1``.
        scores: (N,) float32 confidences, sorted descending.
        labels: (N,) int64 indices into ``class_names`` (no background entry).
        class_names: the detector's class names.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...] = ()
