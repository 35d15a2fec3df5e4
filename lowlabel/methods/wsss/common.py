"""Shared parts of the weakly-supervised segmentation methods (``sipe``, ``mlcam``, ``seg``): training side.

Data (VOC-layout image-label sets with IRN's random resize / flip / crop), the two-group SGD of IRN/SIPE and the
multi-scale + flip forward. Seeds, refinement, evaluation and prediction are in :mod:`lowlabel.methods.wsss.inference`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from lowlabel.data.transforms import normalize_image as normalize_image  # the WSSS methods normalise through common
from lowlabel.errors import DataError
from lowlabel.methods.base import OptimConfig, build_optimizer
from lowlabel.models.seg_nets import MultiLabelCAMNet, build_staged_backbone
from lowlabel.structures import COCO_CLASSES, IGNORE_INDEX, VOC_CLASSES

ScoreFn = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]  # (image, labels) -> ((K1, H, W) scores, (C, h, w))


@dataclass
class DataConfig:
    """Where the VOC-layout data is and how training crops are made."""

    root: str = "synth:quick"  # a VOC2012-layout folder, or synth:<preset>[:<seed>] (ShapesWorld voc/)
    train_split: str = "train"  # ImageSets/Segmentation/<split>.txt (VOC12: train_aug with SBD labels)
    label_list: str = ""  # optional SBD-style cls_labels.npy / label file instead of the XMLs
    classes: str = "voc"  # class names: "voc" (20), "coco" (80) or a text file with one name per line
    with_xml: bool = True  # read Annotations/<id>.xml (labels when no label_list; GT boxes for CorLoc)
    crop: int = 512  # official crop
    long_side: tuple[int, int] = (320, 640)  # random resize of the long side (official: 320..640)

    def __post_init__(self) -> None:
        if self.crop < 8 or not 0 < self.long_side[0] <= self.long_side[1]:
            raise ValueError(f"data.crop must be >= 8 and data.long_side increasing, got {self.crop}, {self.long_side}")


@dataclass
class ModelConfig:
    """The backbone and the new layers."""

    # "resnet50_os16" (paper: IRN's stride-16 ResNet-50), "resnet101_os16", "resnet18_os16", or a
    # lowlabel.models.backbones name ("resnet_small": the stride-8 ShapesWorld net shared with CAM/DA-WSOL).
    # side_channels: SIPE only (mlcam has no side convs).
    backbone: str = "resnet50_os16"
    frozen_bn: bool = True  # IRN's FixedBatchNorm (needs pretrained statistics); False when training from scratch
    pretrained: str = ""  # "", "torchvision" (ImageNet weights), a torchvision state dict; resnet_small: a lowlabel run
    freeze_stem: bool = True  # the official code freezes conv1/bn1
    detach_stage: int = 2  # x_k.detach() after stage k (official: 2, so stages 0-2 get no gradient); 0 = off
    side_channels: tuple[int, int, int, int] = (128, 128, 256, 256)  # official side1..side4 widths
    width: int = 32  # resnet_small only: first-stage channels (then x2, x4, x8)

    def __post_init__(self) -> None:
        if not 0 <= self.detach_stage <= 4:
            raise ValueError(f"model.detach_stage must be in 0..4, got {self.detach_stage}")




@dataclass
class InferConfig:
    """Multi-scale inference, refinement and what evaluation writes."""

    scales: tuple[float, ...] = (1.0, 0.5, 1.5, 2.0)  # official make_cam.py
    flip: bool = True
    # "none" (pseudo mask = seed), "affinity" (random walk on the feature affinity) or "crf" (dense CRF with
    # SIPE's cam2ir parameters; needs the optional pydensecrf2 package, which lowlabel does not depend on)
    refine: str = "affinity"
    rw_beta: float = 10.0  # affinity = relu(cos)^beta (IRN's beta)
    rw_log2_steps: int = 6  # 2^k random-walk steps via repeated squaring (IRN: exp_times 8)
    max_images: int = 0  # evaluate at most this many images of the split (0 = all)
    num_fixed_samples: int = 6
    num_worst_samples: int = 6
    write_pngs: bool = True  # seeds/<id>.png and pseudo/<id>.png in the eval folder

    def __post_init__(self) -> None:
        if self.refine not in ("none", "affinity", "crf"):
            raise ValueError(f"infer.refine must be 'none', 'affinity' or 'crf', got {self.refine!r}")
        if self.refine == "crf":
            import importlib.util

            if importlib.util.find_spec("pydensecrf") is None:
                raise ValueError("infer.refine crf needs pydensecrf (pip install pydensecrf2); it is not installed")
        if not self.scales or min(self.scales) <= 0:
            raise ValueError(f"infer.scales must be positive, got {self.scales}")


def build_cam_net(cfg: ModelConfig, num_classes: int, *, side_features: bool) -> MultiLabelCAMNet:
    """The multi-label CAM network of ``cfg``, with SIPE's side convs when ``side_features``."""
    backbone = build_staged_backbone(cfg.backbone, pretrained=cfg.pretrained, frozen_bn=cfg.frozen_bn,
                                     freeze_stem=cfg.freeze_stem, width=cfg.width)
    return MultiLabelCAMNet(backbone=backbone, num_classes=num_classes,
                            side_channels=cfg.side_channels if side_features else None, detach_stage=cfg.detach_stage)


def resolve_voc_root(root: str) -> Path:
    from lowlabel.data import resolve_root

    return Path(resolve_root(root, "voc"))


def open_voc(cfg: DataConfig, split: str) -> Any:
    """The ``VOCSegmentation`` reader of ``split`` (no transforms)."""
    from lowlabel.data.voc import VOCSegmentation

    kwargs: dict[str, Any] = {"root": resolve_voc_root(cfg.root), "split": split, "class_names": class_names(cfg),
                              "with_xml": cfg.with_xml}
    if cfg.label_list:
        kwargs["label_list"] = cfg.label_list
    ds = VOCSegmentation(**kwargs)
    if ds.labels_table is not None:
        missing = [i for i in ds.image_ids if i not in ds.labels_table]
        if missing:
            raise DataError(f"label file {cfg.label_list} does not match the image list {ds.split_file}: "
                            f"{len(missing)} of {len(ds.image_ids)} ids have no labels, e.g. {missing[0]!r}")
    return ds


def class_names(cfg: DataConfig) -> list[str]:
    """The foreground class names named by ``cfg.classes``."""
    if cfg.classes == "voc":
        return list(VOC_CLASSES)
    if cfg.classes == "coco":
        return list(COCO_CLASSES)
    path = Path(cfg.classes)
    if not path.is_file():
        raise FileNotFoundError(f"data.classes: expected 'voc', 'coco' or a file of class names, got {cfg.classes!r}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def random_scale_flip_crop(
    image: Tensor, mask: Tensor | None, *, crop: int, long_side: tuple[int, int]
) -> tuple[Tensor, Tensor | None, Tensor]:
    """IRN's training augmentation: random long-side resize, horizontal flip, random crop with padding.

    Args:
        image: float (3, H, W), already normalised (padding with 0 = the mean colour).
        mask: optional (H, W) int64 class ids (padded with 255).
        crop: output side.
        long_side: range of the resized long side.

    Returns:
        image (3, crop, crop), mask (crop, crop) or None, valid (crop, crop) float 0/1.
    """
    _, h, w = image.shape
    target = int(torch.randint(long_side[0], long_side[1] + 1, ()).item())
    size = (max(1, round(h * target / max(h, w))), max(1, round(w * target / max(h, w))))
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    if mask is not None:
        mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest")[0, 0].long()
    if torch.rand(()) < 0.5:
        image = image.flip(-1)
        mask = mask.flip(-1) if mask is not None else None
    h, w = size
    # Place the (possibly smaller) image at a random offset in a crop x crop container, IRN-style.
    top_src = int(torch.randint(0, max(h - crop, 0) + 1, ()).item())
    left_src = int(torch.randint(0, max(w - crop, 0) + 1, ()).item())
    top_dst = int(torch.randint(0, max(crop - h, 0) + 1, ()).item())
    left_dst = int(torch.randint(0, max(crop - w, 0) + 1, ()).item())
    ch, cw = min(h, crop), min(w, crop)
    out = image.new_zeros(3, crop, crop)
    valid = image.new_zeros(crop, crop)
    dst = (slice(top_dst, top_dst + ch), slice(left_dst, left_dst + cw))
    src = (slice(top_src, top_src + ch), slice(left_src, left_src + cw))
    out[(slice(None), *dst)] = image[(slice(None), *src)]
    valid[dst] = 1.0
    out_mask = None
    if mask is not None:
        out_mask = torch.full((crop, crop), IGNORE_INDEX, dtype=torch.long)
        out_mask[dst] = mask[src]
    return out, out_mask, valid


def check_labels(labels: Tensor, image_id: str, where: str) -> Tensor:
    """The multi-hot labels as float, or ``DataError`` when the image has no positive label."""
    labels = torch.as_tensor(labels).float()
    if labels.sum() <= 0:
        raise DataError(f"image {image_id!r} has no positive image-level label ({where}); "
                        "weakly-supervised training needs at least one class per image")
    return labels


class TrainSet(torch.utils.data.Dataset):
    """Augmented training samples ``{"image", "valid", "labels"[, "mask"]}`` over a VOC reader.

    Args:
        base: a ``VOCSegmentation`` (returns ``image``, ``labels``, ``image_id``).
        crop, long_side: see :func:`random_scale_flip_crop`.
        pseudo_dir: read ``<pseudo_dir>/<image_id>.png`` as the mask (segmentation stage).
        where: text naming the label source in error messages.
    """

    def __init__(self, *, base: Any, crop: int, long_side: tuple[int, int], pseudo_dir: Path | None = None,
                 where: str = "") -> None:
        self.base, self.crop, self.long_side = base, crop, long_side
        self.pseudo_dir, self.where = pseudo_dir, where

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        s = self.base[i]
        image_id = str(s["image_id"])
        labels = torch.as_tensor(s["labels"]).float()
        mask = None
        if self.pseudo_dir is not None:
            mask = torch.from_numpy(np.array(Image.open(self.pseudo_dir / f"{image_id}.png"), dtype=np.int64))
        else:
            labels = check_labels(labels, image_id, self.where)
        image = normalize_image(torch.as_tensor(s["image"]))
        image, mask, valid = random_scale_flip_crop(image, mask, crop=self.crop, long_side=self.long_side)
        out = {"image": image, "valid": valid, "labels": labels}
        if mask is not None:
            out["mask"] = mask
        return out


class WSSSData:
    """The data side of a WSSS method: class names and the readers of each split."""

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self.root = resolve_voc_root(cfg.root)
        self._train = open_voc(cfg, cfg.train_split)
        self.class_names: list[str] = list(self._train.class_names)
        self.num_classes = len(self.class_names)

    def train_set(self, pseudo_dir: Path | None = None) -> TrainSet:
        where = self.cfg.label_list or f"{self.root}/Annotations"
        return TrainSet(base=self._train, crop=self.cfg.crop, long_side=self.cfg.long_side, pseudo_dir=pseudo_dir,
                        where=where)

    def split(self, split: str) -> Any:
        return self._train if split == self.cfg.train_split else open_voc(self.cfg, split)


def valid_maps(valid: Tensor, labels: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """(B, K1, h, w) = nearest-downsampled crop-valid mask x [1, labels] (the official ``valid_mask``)."""
    v = F.interpolate(valid[:, None], size=tuple(size), mode="nearest")  # (B, 1, h, w)
    lab1 = torch.cat([labels.new_ones(labels.shape[0], 1), labels], dim=1)  # (B, K1)
    return v * lab1[:, :, None, None]


def two_group_optimizer(model: nn.Module, cfg: OptimConfig, lr_mult: float) -> torch.optim.Optimizer:
    """SGD/Adam over two groups: backbone at ``lr``, new layers (``model.new_parameters()``) at ``lr * lr_mult``."""
    new_ids = {id(p) for p in model.new_parameters()}
    backbone = [p for p in model.parameters() if p.requires_grad and id(p) not in new_ids]
    new = [p for p in model.parameters() if p.requires_grad and id(p) in new_ids]
    groups = [{"params": backbone, "lr": cfg.lr}, {"params": new, "lr": cfg.lr * lr_mult}]
    return build_optimizer([g for g in groups if g["params"]], cfg)


def multiscale_maps(model: nn.Module, image: Tensor, *, scales: Sequence[float], flip: bool,
                    maps: Callable[[Any], tuple[Tensor, Tensor]], eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """The multi-scale + flip inference of IRN/SIPE's ``make_cam``: sum the maps of every scale at the input size,
    then normalise each channel by its max.

    Args:
        model: the network; its output object goes to ``maps``.
        image: float (3, H, W), normalised.
        scales: input scales (``flip_fused_forward`` runs each and its mirror).
        flip: add the mirrored image at every scale.
        maps: ``out -> ((1, C, h, w) maps, (1, D, h, w) features)`` for one fused output.
        eps: added to each channel's max.

    Returns:
        ((C, H, W) maps in [0, 1], (D, h, w) features of scale 1.0, else of the first scale).
    """
    _, hh, ww = image.shape
    total, feats = None, None
    for scale in scales:
        scale_maps, scale_feats = maps(flip_fused_forward(model, image, scale, flip))
        up = F.interpolate(scale_maps, size=(hh, ww), mode="bilinear", align_corners=False)[0]  # (C, H, W)
        total = up if total is None else total + up
        if feats is None or scale == 1.0:
            feats = scale_feats[0]
    if total is None or feats is None:
        raise ValueError("multiscale_maps needs at least one scale")
    return total / (total.amax(dim=(1, 2), keepdim=True) + eps), feats


def flip_fused_forward(model: nn.Module, image: Tensor, scale: float, flip: bool) -> Any:
    """Run ``model`` on ``image`` (3, H, W) at ``scale`` (and its mirror); sum the flip pair on every map.

    Returns the model's output object with batch size 1 (fields ``cam``, ``x4``, ``hier``).
    """
    _, h, w = image.shape
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False) if scale != 1.0 else image[None]
    if flip:
        x = torch.cat([x, x.flip(-1)], dim=0)
    out = model(x)
    if flip:
        for name in ("cam", "x4", "hier"):
            t = getattr(out, name, None)
            if t is not None:
                setattr(out, name, (t[0] + t[1].flip(-1))[None])
    return out
