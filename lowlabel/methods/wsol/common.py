"""What the WSOL methods (``cam``, ``da_wsol``) share: config sections, data, evaluation and prediction.

Evaluation follows wsolevaluation: resize the image to ``crop_size`` squared, take the CAM of the GT
class, turn it into a 224x224 score map (:func:`lowlabel.models.cam_heads.scoremaps_from_cams`) and
feed :class:`lowlabel.metrics.wsol.BoxEvaluator` (boxes) and :class:`~lowlabel.metrics.wsol.MaskEvaluator`
(masks, when the split has mask metadata). Top-1 Loc uses the argmax of the GAP logits.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from lowlabel.methods.base import EvalResult, ExportNet
from lowlabel.models.backbones import build_backbone
from lowlabel.models.cam_heads import CAMNet, scoremaps_from_cams, select_class_cams
from lowlabel.samples import SampleKeeper, save_sample, write_per_image
from lowlabel.structures import Localization

SCOREMAP_SIZE = 224  # wsolevaluation evaluates every score map on a 224x224 grid


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


class CAMInference(torch.nn.Module):
    """A :class:`CAMNet` for export: ``images`` (B, 3, H, W) normalised -> ``logits`` (B, C), ``cams`` (B, C, h, w)."""

    def __init__(self, model: CAMNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.cams(images)


def export_cam_net(model: CAMNet, *, crop_size: int, class_names: list[str] | None) -> ExportNet:
    """The ``export_networks`` entry of the WSOL methods: the classifier with its class activation maps."""
    stride = model.backbone.feature_stride
    return ExportNet(
        module=CAMInference(model).eval(), example_inputs=(torch.randn(2, 3, crop_size, crop_size),),
        input_names=["images"], output_names=["logits", "cams"],
        dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}},
        outputs={"logits": "(B, C) class scores (softmax for probabilities)",
                 "cams": f"(B, C, H/{stride}, W/{stride}) raw class activation maps; lowlabel's heat map is the top "
                         "class's map, min-max normalised and resized bicubically to the image"},
        image_size=(crop_size, crop_size), class_names=class_names)


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
    # Score maps are scored and dropped: only the fixed samples' maps are kept. The worst images are known only
    # once the best CAM threshold is (per-image IoU at that threshold), so their maps are recomputed at the end.
    keeper = SampleKeeper(ds.image_ids, ecfg.num_fixed_samples, ecfg.num_worst_samples)
    fixed_maps: dict[str, np.ndarray] = {}
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
            if image_id in keeper.fixed_ids:
                fixed_maps[image_id] = cam
    metrics = box_ev.compute() if has_boxes else {"Top-1 Cls": 100.0 * correct / max(seen, 1)}
    if mask_ids:
        metrics.update(mask_ev.compute())
    scores = dict(zip(ds.image_ids, box_ev.per_image_best_iou().tolist())) if has_boxes else {}
    write_per_image(out_dir, scores)
    for image_id in ds.image_ids:
        keeper.offer(image_id, scores.get(image_id, 0.0), fixed_maps.get(image_id))
    chosen = keeper.chosen()
    recompute = [i for i, cam in chosen if cam is None]
    maps = {**fixed_maps, **_scoremaps(model, ds, recompute, device)}
    threshold = box_ev.best_threshold() if has_boxes else 0.5
    _save_samples(ds, {i: maps[i] for i, _ in chosen}, out_dir, threshold, mask_ds)
    return EvalResult(metrics=metrics, monitor="MaxBoxAccV2" if has_boxes else "PxAP")


def _scoremaps(model: CAMNet, ds: WSOLDataset, ids: list[str], device: torch.device) -> dict[str, np.ndarray]:
    """The 224x224 GT-class score maps of the images ``ids`` of ``ds``."""
    if not ids:
        return {}
    index = {image_id: i for i, image_id in enumerate(ds.image_ids)}
    items = [ds[index[i]] for i in ids]
    images = torch.stack([torch.as_tensor(item["image"]) for item in items]).to(device)  # (N, 3, S, S)
    labels = torch.as_tensor([item["label"] for item in items], device=device)
    maps, _ = _eval_batch(model, images, labels)
    return dict(zip(ids, maps))


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


def _save_samples(ds: WSOLDataset, maps: dict[str, np.ndarray], out_dir: Path, threshold: float,
                  mask_ds: WSOLDataset | None) -> None:
    """``samples/<id>.npz`` for the chosen images (``maps``: their 224x224 score maps), at the original resolution."""
    from lowlabel.data.io import load_rgb
    from lowlabel.metrics.wsol import boxes_from_scoremap

    for image_id, scoremap in maps.items():
        image = load_rgb(ds.data_root / image_id)
        h, w = image.shape[:2]
        heat = cv2.resize(scoremap, (w, h), interpolation=cv2.INTER_LINEAR).clip(0, 1)
        pred = boxes_from_scoremap(heat, np.array([threshold]), multi_contour=False)[0]
        gt_mask = None
        if mask_ds is not None and image_id in mask_ds.masks:
            gt_mask = mask_ds.load_masks(image_id)[0].astype(np.uint8)
        save_sample(out_dir, image_id, "localization", image, heatmap=heat.astype(np.float32),
                    gt_boxes=np.asarray(ds.boxes[image_id], dtype=np.float32).reshape(-1, 4),
                    pred_boxes=np.asarray(pred, dtype=np.float32).reshape(-1, 4), gt_mask=gt_mask,
                    label=str(ds.labels[image_id]))


def localize(model: CAMNet, images: Sequence[torch.Tensor], *, crop_size: int,
             threshold: float) -> list[Localization]:
    """``predict_batch`` of the CAM methods: uint8 ``(3, H, W)`` images -> one :class:`Localization` each.

    Each image is resized to ``crop_size`` squared (the evaluation transform); the CAM of the predicted (top-1)
    class is resized back to the image, and every contour above ``threshold`` of its max gives a box
    (wsolevaluation box extraction, ``multi_contour``), in original pixels.
    """
    from lowlabel.metrics.wsol import boxes_from_scoremap

    if not images:
        return []
    device = next(model.parameters()).device
    tf = wsol_eval(size=crop_size)
    x = torch.stack([tf(torch.as_tensor(image)) for image in images]).to(device)  # (B, 3, S, S)
    logits, cams = model.cams(x)
    probs = torch.softmax(logits, dim=1)  # (B, C)
    out = []
    for i, image in enumerate(images):
        pred = int(logits[i].argmax())
        heat = scoremaps_from_cams(cams[i : i + 1, pred], tuple(image.shape[1:]))[0]  # (H, W) float32 in [0, 1]
        boxes = np.asarray(boxes_from_scoremap(heat, np.array([threshold]), multi_contour=True)[0]).reshape(-1, 4)
        out.append(Localization(heatmap=torch.from_numpy(heat), boxes=torch.as_tensor(boxes, dtype=torch.float32),
                                label=pred, score=float(probs[i, pred])))
    return out


def write_localization(out: Path, source: Path, name: str, image: np.ndarray, pred: Localization,
                       class_names: list[str] | None) -> dict[str, Any]:
    """``<out>/<name>_cam.png``: the heat map over the image with the predicted boxes (the top one thick), the class
    name and its score, as detection toolkits draw them; returns the ``boxes.json`` row."""
    target = out / f"{name}_cam.png"
    overlay = _overlay(image, pred.heatmap.numpy())
    label = class_names[pred.label] if class_names else f"class {pred.label}"
    draw_boxes_with_label(overlay, pred.boxes.numpy(), f"{label} {pred.score:.2f}")
    if not cv2.imwrite(str(target), cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {target}")
    return {"image": str(source), "class": pred.label, "class_name": class_names[pred.label] if class_names else None,
            "score": pred.score, "boxes": pred.boxes.numpy().astype(int).tolist(), "overlay": target.name}


def draw_boxes_with_label(image: np.ndarray, boxes: np.ndarray, text: str) -> np.ndarray:
    """Draw ``boxes`` (N, 4) xyxy inclusive pixels on the RGB ``image`` in place: the first (the top box) 2 px wide
    with ``text`` on a filled tag above it (inside the image), the others 1 px."""
    h, w = image.shape[:2]
    colour = (255, 255, 255)
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, 4).round().astype(int)):
        cv2.rectangle(image, (int(x0), int(y0)), (int(x1), int(y1)), colour, 2 if i == 0 else 1)
        if i == 0 and text:
            scale = max(0.3, min(h, w) / 400)
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            ty = max(int(y0), th + base + 2)
            tx = min(max(int(x0), 0), max(w - tw - 2, 0))
            cv2.rectangle(image, (tx, ty - th - base - 2), (tx + tw + 2, ty), colour, -1)
            cv2.putText(image, text, (tx + 1, ty - base - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                        cv2.LINE_AA)
    return image


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
