"""What the WSOL methods (``cam``, ``da_wsol``) share: config sections, data, evaluation and prediction.

Evaluation follows wsolevaluation: resize the image to ``crop_size`` squared, take the CAM of the GT
class, turn it into a 224x224 score map (:func:`lowlabel.models.cam_heads.scoremaps_from_cams`) and
feed :class:`lowlabel.metrics.wsol.BoxEvaluator` (boxes) and :class:`~lowlabel.metrics.wsol.MaskEvaluator`
(masks, when the split has mask metadata). Top-1 Loc uses the argmax of the GAP logits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from lowlabel.data.transforms import collate_dicts, wsol_eval, wsol_train
from lowlabel.data.wsol import WSOLDataset
from lowlabel.errors import DataError, UserError
from lowlabel.methods.base import EvalResult
from lowlabel.models.backbones import build_backbone
from lowlabel.models.cam_heads import CAMNet, scoremaps_from_cams, select_class_cams
from lowlabel.samples import choose_sample_ids, save_sample, write_per_image

SCOREMAP_SIZE = 224  # wsolevaluation evaluates every score map on a 224x224 grid
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class WSOLDataConfig:
    """Where the wsolevaluation-format data lives, and the image sizes."""

    # a real folder or synth:<preset>[:<seed>] (ShapesWorld); then images are <root>/images/<dataset>/<id>
    # and metadata <root>/metadata/<dataset>/<split>/ (masks: <root>/metadata/<dataset>Mask/<split>/)
    root: str = "synth:quick"
    dataset: str = "ShapesWorld"
    data_root: str = ""  # overrides the image folder (wsolevaluation's --data_root/<dataset>)
    metadata_root: str = ""  # overrides the metadata folder holding <split>/ (wsolevaluation's metadata/<dataset>)
    mask_metadata_root: str = ""  # PxAP metadata holding <split>/; "" = <metadata_root>Mask when it exists
    mask_root: str = ""  # folder the mask paths are relative to; "" = <root>/masks
    num_classes: int = 0  # 0 = read from the train metadata
    resize_size: int = 256  # train: resize to this square, then random crop (wsolevaluation 256 -> 224)
    crop_size: int = 224  # train crop and eval resize

    def __post_init__(self) -> None:
        if self.crop_size > self.resize_size:
            raise ValueError(f"data.crop_size {self.crop_size} > data.resize_size {self.resize_size}")


@dataclass
class ModelConfig:
    """Backbone + CAM head."""

    backbone: str = "resnet_small"  # resnet50 | vgg16 | inception_v3 | resnet_small
    pretrained: str = ""  # local torchvision-layout weights file; "" = random init
    large_feature_map: bool = True  # ResNet50: layer3 stride 1; Inception: Mixed_6a stride 1
    width: int = 32  # resnet_small only: first-stage channels (feature dim D = 8 * width)
    new_layer_lr_ratio: float = 10.0  # DA-WSOL lr_classifier_ratio: head (and VGG conv6 / SPG head) lr x10


@dataclass
class WSOLEvalConfig:
    """Evaluation protocol and what is saved for the report."""

    cam_curve_interval: float = 0.01  # wsolevaluation default; DA-WSOL's scripts use 0.001
    iou_thresholds: list[int] = field(default_factory=lambda: [30, 50, 70])
    num_fixed_samples: int = 6
    num_worst_samples: int = 6


class WSOLData:
    """Resolves the data config into folders and builds the split datasets."""

    def __init__(self, cfg: WSOLDataConfig) -> None:
        self.cfg = cfg
        base: Path | None = None
        if cfg.root:
            from lowlabel.data import resolve_root

            base = resolve_root(cfg.root, "wsol")
        if base is None and not (cfg.data_root and cfg.metadata_root):
            raise UserError("data: give data.root, or both data.data_root and data.metadata_root")
        self.image_root = Path(cfg.data_root) if cfg.data_root else base / "images" / cfg.dataset
        self.metadata_root = Path(cfg.metadata_root) if cfg.metadata_root else base / "metadata" / cfg.dataset
        mask_meta = Path(cfg.mask_metadata_root) if cfg.mask_metadata_root else Path(f"{self.metadata_root}Mask")
        self.mask_metadata_root = mask_meta if mask_meta.is_dir() else None
        self.mask_root = Path(cfg.mask_root) if cfg.mask_root else (base / "masks" if base else None)

    def dataset(self, split: str, *, train: bool, masks: bool = False) -> WSOLDataset:
        meta = (self.mask_metadata_root if masks else self.metadata_root) / split
        if not meta.is_dir():
            raise DataError(f"{meta}: no metadata folder for split {split!r}")
        tf = wsol_train(resize=self.cfg.resize_size, crop=self.cfg.crop_size) if train else \
            wsol_eval(size=self.cfg.crop_size)
        mask_root = self.mask_root if self.mask_root is not None and self.mask_root.is_dir() else None
        return WSOLDataset(data_root=self.image_root, metadata_dir=meta, transforms=tf, mask_root=mask_root)

    def num_classes(self) -> int:
        if self.cfg.num_classes:
            return self.cfg.num_classes
        return self.dataset("train", train=False).num_classes


def check_labels(ds: WSOLDataset, num_classes: int) -> None:
    """``DataError`` naming the file and line of the first label outside ``[0, num_classes)``."""
    bad = [i for i in ds.image_ids if not 0 <= ds.labels[i] < num_classes]
    if bad:
        path = ds.metadata_dir / "class_labels.txt"
        lines = path.read_text().splitlines()
        lineno = next((n for n, line in enumerate(lines, 1) if line.split(",")[0].strip() == bad[0]), 0)
        raise DataError(f"{path}:{lineno}: class label {ds.labels[bad[0]]} of {bad[0]!r} is outside "
                        f"[0, {num_classes}) ({len(bad)} such labels)")


def build_cam_net(model: ModelConfig, num_classes: int) -> CAMNet:
    backbone = build_backbone(name=model.backbone, pretrained=model.pretrained,
                              large_feature_map=model.large_feature_map, width=model.width)
    return CAMNet(backbone=backbone, num_classes=num_classes)


def unwrap(net: torch.nn.Module) -> CAMNet:
    """The plain :class:`CAMNet` behind an engine wrapper (Fabric keeps it as ``.module``)."""
    inner = getattr(net, "module", net)
    return getattr(inner, "module", inner) if not isinstance(inner, CAMNet) else inner


def _eval_batch(model: CAMNet, images: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    logits, cams = model.cams(images)
    maps = scoremaps_from_cams(select_class_cams(cams, labels), SCOREMAP_SIZE)  # (B, 224, 224)
    return maps, logits.argmax(dim=1).cpu().numpy()


def evaluate_wsol(model: CAMNet, data: WSOLData, ecfg: WSOLEvalConfig, *, split: str, out_dir: Path,
                  batch_size: int, num_workers: int) -> EvalResult:
    """Score ``split``: box metrics (when it has boxes), PxAP (when it has masks), per-image IoU, samples."""
    from lowlabel.metrics.wsol import BoxEvaluator, MaskEvaluator

    ds = data.dataset(split, train=False)
    check_labels(ds, model.num_classes)
    mask_ds = ds if ds.has_masks() else (data.dataset(split, train=False, masks=True)
                                         if data.mask_metadata_root and (data.mask_metadata_root / split).is_dir()
                                         else None)
    has_boxes = any(ds.boxes[i] for i in ds.image_ids)
    if not has_boxes and mask_ds is None:
        raise DataError(f"{ds.metadata_dir / 'localization.txt'}: split {split!r} has neither boxes nor masks")
    mask_ids = {item[0] for item in mask_ds.mask_items()} if mask_ds is not None else set()
    box_ev = BoxEvaluator(cam_curve_interval=ecfg.cam_curve_interval, iou_thresholds=tuple(ecfg.iou_thresholds))
    mask_ev = MaskEvaluator(cam_curve_interval=ecfg.cam_curve_interval)
    device = next(model.parameters()).device
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_dicts)
    maps_by_id: dict[str, np.ndarray] = {}
    correct, seen = 0, 0
    for batch in loader:
        labels = torch.as_tensor(batch["label"], device=device)
        maps, preds = _eval_batch(model, batch["image"].to(device), labels)
        for image_id, cam, pred, label in zip(batch["image_id"], maps, preds, labels.tolist()):
            h, w = ds.sizes.get(image_id, None) or _orig_hw(ds, image_id)
            if has_boxes:
                box_ev.update(cam, np.asarray(ds.boxes[image_id]), (w, h), pred_class=int(pred), gt_class=label)
            if image_id in mask_ids:
                gt, ignore = _masks_224(mask_ds, image_id)
                mask_ev.update(cam, gt, ignore)
            correct, seen = correct + int(pred == label), seen + 1
            maps_by_id[image_id] = cam
    metrics = box_ev.compute() if has_boxes else {"Top-1 Cls": 100.0 * correct / max(seen, 1)}
    if mask_ids:
        metrics.update(mask_ev.compute())
    scores = dict(zip(ds.image_ids, box_ev.per_image_best_iou().tolist())) if has_boxes else {}
    write_per_image(out_dir, scores)
    _save_samples(ds, maps_by_id, scores, ecfg, out_dir, box_ev.best_threshold() if has_boxes else 0.5, mask_ds)
    return EvalResult(metrics=metrics, monitor="MaxBoxAccV2" if has_boxes else "PxAP")


def _orig_hw(ds: WSOLDataset, image_id: str) -> tuple[int, int]:
    from lowlabel.data.io import load_rgb

    arr = load_rgb(ds.data_root / image_id)
    return arr.shape[0], arr.shape[1]


def _masks_224(mask_ds: WSOLDataset, image_id: str) -> tuple[np.ndarray, np.ndarray]:
    """GT and ignore masks resized to 224 with nearest neighbour (wsolevaluation ``get_mask``)."""
    gt, ignore = mask_ds.load_masks(image_id)
    size = (SCOREMAP_SIZE, SCOREMAP_SIZE)
    gt = cv2.resize(gt.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    ignore = cv2.resize(ignore.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    return gt, ignore & ~gt


def _save_samples(ds: WSOLDataset, maps: dict[str, np.ndarray], scores: dict[str, float], ecfg: WSOLEvalConfig,
                  out_dir: Path, threshold: float, mask_ds: WSOLDataset | None) -> None:
    """``samples/<id>.npz`` for the fixed and the worst images, at the original resolution."""
    from lowlabel.data.io import load_rgb
    from lowlabel.metrics.wsol import boxes_from_scoremap

    ids = choose_sample_ids(ds.image_ids, scores, ecfg.num_fixed_samples, ecfg.num_worst_samples)
    for image_id in ids:
        image = load_rgb(ds.data_root / image_id)
        h, w = image.shape[:2]
        heat = cv2.resize(maps[image_id], (w, h), interpolation=cv2.INTER_LINEAR).clip(0, 1)
        pred = boxes_from_scoremap(heat, np.array([threshold]), multi_contour=False)[0]
        gt_mask = None
        if mask_ds is not None and image_id in mask_ds.masks:
            gt_mask = mask_ds.load_masks(image_id)[0].astype(np.uint8)
        save_sample(out_dir, image_id, "localization", image, heatmap=heat.astype(np.float32),
                    gt_boxes=np.asarray(ds.boxes[image_id], dtype=np.float32).reshape(-1, 4),
                    pred_boxes=np.asarray(pred, dtype=np.float32).reshape(-1, 4), gt_mask=gt_mask,
                    label=str(ds.labels[image_id]))


def predict_folder(model: CAMNet, inputs: Path, out: Path, *, crop_size: int, threshold: float = 0.5,
                   class_names: list[str] | None = None) -> None:
    """CAM overlays (``<name>_cam.png``) and ``boxes.json`` for every image under ``inputs``.

    The CAM of the predicted (top-1) class is thresholded at ``threshold`` of its max (as in
    wsolevaluation box extraction), and every contour's box is kept, in original pixels.
    """
    from lowlabel.data.io import load_rgb
    from lowlabel.metrics.wsol import boxes_from_scoremap

    files = [inputs] if inputs.is_file() else sorted(p for p in inputs.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"--input {inputs}: no images ({', '.join(IMAGE_SUFFIXES)})")
    out.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    tf = wsol_eval(size=crop_size)
    results = []
    for path in files:
        image = load_rgb(path)
        x = tf(torch.from_numpy(image).permute(2, 0, 1))[None].to(device)  # (1, 3, S, S)
        logits, cams = model.cams(x)
        pred = int(logits.argmax(dim=1))
        h, w = image.shape[:2]
        heat = scoremaps_from_cams(cams[:, pred], (h, w))[0]
        boxes = boxes_from_scoremap(heat, np.array([threshold]), multi_contour=True)[0]
        overlay = _overlay(image, heat)
        name = path.relative_to(inputs).with_suffix("") if path != inputs else Path(path.stem)
        target = out / f"{str(name).replace('/', '_')}_cam.png"
        if not cv2.imwrite(str(target), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {target}")
        score = float(torch.softmax(logits, dim=1)[0, pred])
        results.append({"image": str(path), "class": pred, "class_name": class_names[pred] if class_names else None,
                        "score": score, "boxes": np.asarray(boxes).reshape(-1, 4).astype(int).tolist(),
                        "overlay": target.name})
    (out / "boxes.json").write_text(json.dumps(results, indent=1))


def _overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]  # BGR -> RGB
    return (image * (1 - alpha) + colour * alpha).clip(0, 255).astype(np.uint8)


def count_correct(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of the batch classified right (a training log value)."""
    return float((logits.argmax(dim=1) == labels).float().mean())


def as_labels(batch: dict[str, Any], num_classes: int, device: torch.device) -> torch.Tensor:
    """The batch labels as a long tensor, ``DataError`` if one is outside ``[0, num_classes)``."""
    labels = torch.as_tensor(batch["label"], device=device).long()
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0].item()
        raise DataError(f"class label {bad} in the training batch is outside [0, {num_classes})")
    return labels
