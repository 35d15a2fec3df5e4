"""What the cross-domain methods share: labelled detection splits, the source detector, its boxes and their score.

* :class:`DetectionDataConfig` / :class:`DetectionSplit`: named labelled splits, each an image folder plus a COCO JSON
  file or a folder of VOC XML files (optionally restricted by a VOC ``ImageSets`` list). ``root: synth:<preset>``
  gives ShapesWorld's ``domains/`` splits: ``trainA`` (clear source, the detector's training split), ``testA``,
  ``testB`` (foggy target) and ``testB_clean`` (the fog-free twins of testB, with testB's boxes). Labels follow the
  configured class names (default: the training annotations' classes, COCO category-id order or sorted VOC names);
  boxes of other classes are dropped, as the DA-detection benchmarks keep 8 (or 1, or 2) classes of richer datasets.
  ``root_kind: coco`` takes ShapesWorld's ``coco/`` instead: ``train`` (base-category boxes only) and ``val`` (all).
  ``class_agnostic`` merges every kept class into one, ``object``, for training and evaluation: the proposal
  network of the open-vocabulary stages (:mod:`lowlabel.methods.open_vocab.proposals`).
* :class:`DetectorModelConfig`, :func:`build_network`: the Faster R-CNN C4 of :mod:`lowlabel.models.detectors`.
* :func:`load_detector`: a ``lowlabel train detector`` run (or its checkpoint) as a frozen network plus its class
  names; :func:`check_classes` refuses a detector of other classes than a dataset's.
* :func:`detect`: float images in, :class:`~lowlabel.structures.Detections` out (labels 0..K-1, exclusive xyxy).
* :func:`score_detections`: VOC mAP@0.5 with per-class AP (``lowlabel.metrics.voc_ap``). Our boxes have exclusive
  extents (a box of the pixels 0..9 ends at 10); the VOC scorer takes inclusive corners and +1 areas, so each box
  enters it as ``x0, y0, x1 - 1, y1 - 1``.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset
from torchvision import tv_tensors

from lowlabel.data.unpaired import DetectionFolder
from lowlabel.errors import DataError, UserError
from lowlabel.methods.base import Frozen
from lowlabel.metrics.voc_ap import VOCAPEvaluator
from lowlabel.models.detectors import DETECTOR_BACKBONES, RoISettings, RPNSettings, build_detector
from lowlabel.models.modes import eval_mode
from lowlabel.models.weights import load_nets, read_stage
from lowlabel.structures import Detections

DETECTOR_METHOD = "detector"  # the method name a detector run records
# ShapesWorld domains/ (DESIGN.md section 2): split -> (image folder, COCO JSON), relative to the domains folder
SYNTH_SPLITS = {
    "trainA": ("trainA", "annotations/trainA.json"),
    "testA": ("testA", "annotations/testA.json"),
    "testB": ("testB", "annotations/testB.json"),
    "testB_clean": ("testB_clean", "annotations/testB.json"),  # the fog-free twins carry testB's boxes
}
# ShapesWorld coco/ (lowlabel/data/synth/coco_task.py): train has boxes of the base categories only, val of all
SYNTH_COCO_SPLITS = {
    "train": ("train2017", "annotations/instances_train.json"),
    "val": ("val2017", "annotations/instances_val.json"),
}
SYNTH_ROOT_SPLITS = {"domains": SYNTH_SPLITS, "coco": SYNTH_COCO_SPLITS}
AGNOSTIC_CLASS = "object"  # the one class of a class-agnostic detector


# ---------------------------------------------------------------- data


@dataclass
class SplitFolders:
    """One labelled split: images and their boxes (:class:`~lowlabel.data.unpaired.DetectionFolder` reads them)."""

    images: str = ""  # image folder; COCO file names and VOC/KITTI <stem>.xml|.txt refer to files under it
    annotations: str = ""  # a COCO instances .json file, or a folder of VOC .xml or KITTI .txt label files
    image_set: str = ""  # optional list of image ids (file stems), one a line (VOC ImageSets/Main/<set>.txt)
    file_suffix: str = ""  # only image files ending so (Foggy Cityscapes: _leftImg8bit_foggy_beta_0.02.png)
    annotated_suffix: str = ""  # the annotations name each file with this ending instead (Cityscapes: _leftImg8bit.png)
    class_map: dict[str, str] = field(default_factory=dict)  # annotation class name -> name used (KITTI: Car -> car)


@dataclass
class DetectionDataConfig:
    """Labelled detection splits by name, and the training augmentation."""

    root: str = "synth:quick"  # synth:<preset>[:<seed>] or a ShapesWorld folder: the splits of root_kind; "" = none
    root_kind: str = "domains"  # the ShapesWorld folder of root: domains (trainA, testA, testB, testB_clean) or coco
                                # (train: base boxes only, val)
    splits: dict[str, SplitFolders] = field(default_factory=dict)  # more splits (or replacements) by name
    train_split: str = "trainA"  # the labelled source split the detector trains on
    classes: list[str] = field(default_factory=list)  # label order; [] = the train split's annotation classes
    class_agnostic: bool = False  # every kept box becomes class "object" (a proposal network; RegionCLIP's RPN)
    flip: bool = True  # random horizontal flip in training (detectron2's RandomFlip)
    max_eval_images: int = 0  # 0 = the whole split
    num_fixed_samples: int = 6
    num_worst_samples: int = 6

    def __post_init__(self) -> None:
        if self.max_eval_images < 0:
            raise ValueError(f"data.max_eval_images must be >= 0, got {self.max_eval_images}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"data.classes has duplicates: {self.classes}")
        if self.root_kind not in SYNTH_ROOT_SPLITS:
            raise ValueError(f"data.root_kind must be one of {', '.join(SYNTH_ROOT_SPLITS)}, got {self.root_kind!r}")
        if self.class_agnostic and self.classes not in ([], [AGNOSTIC_CLASS]):
            raise ValueError(f"data.class_agnostic has one class, {AGNOSTIC_CLASS!r}; got data.classes {self.classes}")

    def resolved_splits(self) -> dict[str, SplitFolders]:
        """Every split by name: ShapesWorld's (for a root) updated with ``splits``."""
        out: dict[str, SplitFolders] = {}
        if self.root:
            from lowlabel.data import resolve_root

            base = Path(resolve_root(self.root, self.root_kind))
            out = {
                name: SplitFolders(images=str(base / d), annotations=str(base / a))
                for name, (d, a) in SYNTH_ROOT_SPLITS[self.root_kind].items()
            }
        out.update(self.splits)
        return out

    def split(self, name: str) -> SplitFolders:
        """The folders of split ``name``; ``UserError`` naming the known splits."""
        splits = self.resolved_splits()
        if name not in splits:
            raise UserError(
                f"no split {name!r} in the data config; known splits: {', '.join(sorted(splits)) or 'none'}"
                " (set data.root, or data.splits.<name>.images and .annotations)"
            )
        found = splits[name]
        if not found.images or not found.annotations:
            raise UserError(f"split {name!r}: set both data.splits.{name}.images and data.splits.{name}.annotations")
        return found


def check_classes(
    detector_classes: Sequence[str], dataset_classes: Sequence[str], *, detector: str, dataset: str
) -> Tensor:
    """The map from a dataset's labels to a detector's: ``(len(dataset_classes),)`` int64, -1 for a dataset class the
    detector does not have (its boxes are dropped, e.g. Sim10k's person boxes for a car detector).

    Raises:
        UserError: a class of the detector is not among the dataset's (a detector of other classes, or a typo in
            ``data.classes``): one line naming both.
    """
    missing = [c for c in detector_classes if c not in dataset_classes]
    if missing:
        raise UserError(
            f"{dataset}: has no class {missing[0]!r} of {detector} (the dataset's classes: "
            f"{', '.join(dataset_classes) or 'none'}; {detector}: {', '.join(detector_classes)})"
        )
    index = {name: i for i, name in enumerate(detector_classes)}
    return torch.tensor([index.get(name, -1) for name in dataset_classes], dtype=torch.int64)


def _read_image_set(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: image set file not found")
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


class DetectionSplit(Dataset):
    """A labelled split with the labels of ``classes``.

    Item: ``{"image": Image uint8 (3, H, W), "boxes": BoundingBoxes XYXY (N, 4) float32 with exclusive extents,
    "labels": int64 (N,) in 0..K-1, "difficult": bool (N,) (scored as neither hit nor miss: VOC difficult, COCO
    crowd), "iscrowd": bool (N,) (not trained on), "image_id": str (the file name without its suffix),
    "file_name": str}``.

    Args:
        name: the split's name (for messages).
        folders: its images and annotations.
        classes: class names in label order ([] = the annotations' classes).
        transforms: applied to each item dict (``torchvision.transforms.v2`` style).
        limit: keep the first ``limit`` images (0 = all).
        classes_from: how to name ``classes`` in a mismatch error ("data.classes", "the detector <run>").
        class_agnostic: every class (after ``class_map``) becomes :data:`AGNOSTIC_CLASS`; ``classes`` is then
            ``[]`` or ``["object"]``.
    """

    def __init__(
        self,
        *,
        name: str,
        folders: SplitFolders,
        classes: Sequence[str] = (),
        transforms: Any = None,
        limit: int = 0,
        classes_from: str = "data.classes",
        class_agnostic: bool = False,
    ) -> None:
        self.name, self.transforms = name, transforms
        self.folder = DetectionFolder(
            image_dir=folders.images,
            annotations=folders.annotations,
            file_suffix=folders.file_suffix,
            annotated_suffix=folders.annotated_suffix,
        )
        self.names = self.folder.file_names()
        self.indices = list(range(len(self.folder)))
        if folders.image_set:
            self.indices = self._restrict(Path(folders.image_set))
        if limit:
            self.indices = self.indices[:limit]
        if not self.indices:
            raise DataError(f"{folders.annotations}: split {name!r} has no images")
        source = [folders.class_map.get(c, c) for c in self.folder.class_names]  # renamed; several may merge
        if class_agnostic:
            source = [AGNOSTIC_CLASS] * len(source)
        self.class_names = list(classes) or list(dict.fromkeys(source))
        self.label_map = check_classes(self.class_names, source, detector=classes_from, dataset=folders.annotations)

    def _restrict(self, image_set: Path) -> list[int]:
        wanted = _read_image_set(image_set)
        stems = {Path(name).stem: i for i, name in enumerate(self.names)}
        absent = [w for w in wanted if w not in stems]
        if absent:
            raise DataError(
                f"{image_set}: image {absent[0]!r} is not among the images of {self.folder.image_dir} "
                f"({len(absent)} of {len(wanted)} listed are missing)"
            )
        return [stems[w] for w in wanted]

    def image_ids(self) -> list[str]:
        """The item ids in order, without reading images."""
        return [str(Path(self.names[i]).with_suffix("")) for i in self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.folder[self.indices[index]]
        labels = self.label_map[item["labels"]]
        keep = labels >= 0
        boxes = tv_tensors.wrap(item["boxes"].as_subclass(Tensor)[keep].float(), like=item["boxes"])
        file_name = str(item["file_name"])
        out = {
            "image": item["image"],
            "boxes": boxes,
            "labels": labels[keep],
            "difficult": item["difficult"][keep],
            "iscrowd": item["iscrowd"][keep],
            "file_name": file_name,
            "image_id": str(Path(file_name).with_suffix("")),
        }
        return self.transforms(out) if self.transforms is not None else out


class TrainAugment:
    """Training-time: a random horizontal flip of image and boxes, then COCO crowd regions and boxes without area
    are dropped (detectron2's DatasetMapper drops crowds; torchvision's Faster R-CNN refuses empty boxes). VOC's
    difficult boxes are trained on, as detectron2 does."""

    def __init__(self, *, flip: bool) -> None:
        from torchvision.transforms import v2

        self.flip = v2.RandomHorizontalFlip() if flip else None

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        if self.flip is not None:
            item = self.flip(item)
        boxes = item["boxes"].as_subclass(Tensor)
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]) & ~item["iscrowd"]
        if not bool(keep.all()):
            item = {**item, "boxes": tv_tensors.wrap(boxes[keep], like=item["boxes"])}
            item.update({key: item[key][keep] for key in ("labels", "difficult", "iscrowd")})
        return item


def eval_target(item: Mapping[str, Any]) -> dict[str, Tensor]:
    """The scored target of a :class:`DetectionSplit` item: ``{"boxes", "labels", "difficult"}``."""
    return {"boxes": item["boxes"].as_subclass(Tensor).float(), "labels": item["labels"],
            "difficult": item["difficult"]}


def collate_detection(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """``{"images": [float (3, H_i, W_i) in [0, 1]], "targets": [{"boxes": (N_i, 4) float32 exclusive xyxy,
    "labels": (N_i,) int64 in 0..K-1}], "image_ids": [str]}``; images keep their own sizes."""
    return {
        "images": [it["image"].as_subclass(Tensor).float().div(255) for it in items],
        "targets": [{"boxes": it["boxes"].as_subclass(Tensor).float(), "labels": it["labels"]} for it in items],
        "image_ids": [it["image_id"] for it in items],
    }


# ---------------------------------------------------------------- the network


@dataclass
class DetectorModelConfig:
    """The Faster R-CNN C4 (:func:`lowlabel.models.detectors.build_detector`). Defaults: detectron2's R50-C4 settings
    on our small backbone; the configs set each value with its source."""

    backbone: str = "resnet_small"  # resnet_small (ShapesWorld, stride 8), resnet18 or resnet50 (torchvision)
    width: int = 32  # resnet_small: first-stage channels (the classify/synth:pretrain width)
    pretrained: str = ""  # "", "torchvision" (ImageNet, downloaded), a state dict, a classify run, synth:pretrain
    frozen_bn: bool | None = None  # freeze every BatchNorm; null = iff pretrained (detectron2's FrozenBN)
    freeze_at: int = 0  # detectron2 FREEZE_AT: 0 = train all, 1 = freeze the stem, 2 = the stem and res2
    min_size: int = 0  # shorter side for training and testing (0 = keep each image's size)
    max_size: int = 0  # cap on the longer side (with min_size > 0)
    rpn: RPNSettings = field(default_factory=RPNSettings)
    roi: RoISettings = field(default_factory=RoISettings)

    def __post_init__(self) -> None:
        if self.backbone not in DETECTOR_BACKBONES:
            raise ValueError(f"model.backbone must be one of {', '.join(DETECTOR_BACKBONES)}, got {self.backbone!r}")
        if self.min_size < 0 or (self.min_size and self.max_size < self.min_size):
            raise ValueError(
                f"need model.min_size >= 0 and model.max_size >= model.min_size, got {self.min_size} "
                f"and {self.max_size}"
            )


def build_network(cfg: DetectorModelConfig, num_classes: int, *, load_pretrained: bool = True) -> nn.Module:
    """The detector of ``cfg`` for ``num_classes`` object classes. ``load_pretrained=False`` builds the same module
    (the same BatchNorm kind) without reading pretrained weights, for loading a trained checkpoint over it."""
    frozen_bn = cfg.frozen_bn if cfg.frozen_bn is not None else bool(cfg.pretrained)
    return build_detector(
        backbone=cfg.backbone,
        num_classes=num_classes,
        pretrained=cfg.pretrained if load_pretrained else "",
        width=cfg.width,
        frozen_bn=frozen_bn,
        freeze_at=cfg.freeze_at,
        min_size=cfg.min_size,
        max_size=cfg.max_size,
        rpn=cfg.rpn,
        roi=cfg.roi,
    )


def _from_dict(cls: type, values: Any, source: str) -> Any:
    """A (nested) config dataclass from the plain dict a checkpoint records; ``UserError`` naming ``source``."""
    if not isinstance(values, Mapping):
        raise UserError(f"{source}: expected a mapping for {cls.__name__}, found {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UserError(f"{source}: unknown detector setting(s) {unknown} for {cls.__name__}")
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            value = _from_dict(hint, value, source)  # type: ignore[arg-type]
        elif typing.get_origin(hint) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise UserError(f"{source}: invalid detector settings ({err})") from None


def load_detector(source: str) -> tuple[Frozen, list[str]]:
    """A trained detector, frozen: a ``lowlabel train detector`` run folder, its checkpoint, or its
    ``save_pretrained`` folder -> (the network in eval mode without gradients, its class names in label order).

    Raises:
        UserError: one line naming ``source``: empty, missing, not a detector run, no recorded config or classes,
            or weights that do not fit.
    """
    if not str(source):
        raise UserError("detector: empty; name a `lowlabel train detector` run folder or its checkpoint")
    if not Path(source).exists():
        raise UserError(f"{source}: no such detector run or checkpoint (train one with `lowlabel train detector`)")
    try:
        weights = read_stage(source, stage="the frozen detector")
    except FileNotFoundError as err:  # a folder that is neither a run nor a pretrained folder
        raise UserError(str(err)) from None
    if weights.method != DETECTOR_METHOD:
        what = f"a run of {weights.method!r}" if weights.method else "a weights file without a lowlabel config"
        raise UserError(f"{weights.file}: {what}, not a detector run (train one with `lowlabel train detector`)")
    config = weights.config or {}
    classes = list((config.get("data") or {}).get("classes") or [])
    if not classes:
        raise UserError(f"{weights.file}: the detector run records no class names (data.classes)")
    model_cfg = _from_dict(DetectorModelConfig, config.get("model") or {}, str(weights.file))
    module = build_network(model_cfg, len(classes), load_pretrained=False)
    load_nets({"detector": module}, weights.nets, source=weights.file)
    module.requires_grad_(False).eval()  # as the engine keeps frozen networks; also outside the engine
    return Frozen(module=module, source=str(weights.file), sha256=weights.sha256()), classes


# ---------------------------------------------------------------- detecting and scoring


def detect(model: nn.Module, images: Sequence[Tensor], class_names: Sequence[str] = ()) -> list[Detections]:
    """Run a detector of :func:`build_network` on float ``(3, H, W)`` images in [0, 1] (any sizes).

    The model runs in eval mode without gradients (its mode is restored after). Returns one :class:`Detections` per
    image: boxes (N, 4) float32 xyxy with exclusive extents in the image's pixels, scores sorted descending, labels
    0..K-1 (torchvision's 1..K minus the background).
    """
    if not images:
        return []
    for image in images:
        if image.ndim != 3 or image.shape[0] != 3 or not image.is_floating_point():
            raise ValueError(
                f"detect: images must be float (3, H, W) in [0, 1], got {image.dtype} {tuple(image.shape)}"
            )
    device = next(model.parameters()).device
    with eval_mode([model]):
        outputs = model([image.to(device) for image in images])
    found = []
    for out in outputs:
        scores = out["scores"].detach().float().cpu()
        order = torch.argsort(scores, descending=True, stable=True)
        found.append(
            Detections(
                boxes=out["boxes"].detach().float().cpu()[order],
                scores=scores[order],
                labels=out["labels"].detach().cpu().long()[order] - 1,
                class_names=tuple(class_names),
            )
        )
    return found


def to_inclusive(boxes: Tensor) -> np.ndarray:
    """Exclusive xyxy (N, 4) -> the VOC scorer's inclusive corners ``x0, y0, x1 - 1, y1 - 1`` (float64). A box less
    than a pixel wide keeps ``x1 >= x0`` (the scorer refuses inverted boxes)."""
    b = torch.as_tensor(boxes).detach().double().reshape(-1, 4).cpu().numpy().copy()
    b[:, 2:] = np.maximum(b[:, 2:] - 1.0, b[:, :2])
    return b


def ap_metrics(ap: Mapping[str, float | None]) -> dict[str, float]:
    """``{"AP/<class>": percent}`` of the classes that have an AP (a per-class table's flat metrics.json keys)."""
    return {f"AP/{name}": float(value) for name, value in ap.items() if value is not None}


def score_detections(
    detections: Sequence[Detections],
    targets: Sequence[Mapping[str, Tensor]],
    class_names: Sequence[str],
    use_07_metric: bool = False,
) -> dict[str, Any]:
    """VOC mAP@0.5 of ``detections`` against ``targets`` (one per image, in the same order).

    Args:
        detections: boxes with exclusive extents, labels 0..K-1.
        targets: ``{"boxes": (N, 4) exclusive xyxy, "labels": (N,) 0..K-1}`` and optionally ``"difficult"`` (N,) bool.
        class_names: the K classes.
        use_07_metric: VOC07 11-point AP instead of the all-point area.

    Returns:
        ``{"mAP": percent (NaN without any GT box), "AP": {class: percent or None (no GT box)}, "use_07_metric",
        "iou_thresh": 0.5}`` (:meth:`lowlabel.metrics.voc_ap.VOCAPEvaluator.compute`).
    """
    if len(detections) != len(targets):
        raise ValueError(f"score_detections: {len(detections)} detection lists for {len(targets)} targets")
    evaluator = VOCAPEvaluator(class_names=list(class_names), iou_thresh=0.5, use_07_metric=use_07_metric)
    for i, (dets, target) in enumerate(zip(detections, targets)):
        if dets.class_names and tuple(dets.class_names) != tuple(class_names):
            raise ValueError(
                f"score_detections: detections of classes {list(dets.class_names)}, scored as {list(class_names)}"
            )
        evaluator.update(
            str(i),
            to_inclusive(dets.boxes),
            dets.scores,
            dets.labels,
            to_inclusive(target["boxes"]),
            target["labels"],
            target.get("difficult"),
        )
    return evaluator.compute()


def coco_results(
    dets: Detections, *, image_id: int, file_name: str, class_names: Sequence[str]
) -> list[dict[str, Any]]:
    """One image's detections as COCO results rows (what ``lowlabel score coco --detections`` and pycocotools'
    ``loadRes`` read): ``image_id``, ``category_id`` = label + 1, ``bbox`` = [x, y, w, h], ``score``, plus the
    image's ``file_name`` and the ``category_name``."""
    from lowlabel.structures import xyxy_to_coco

    boxes = xyxy_to_coco(torch.as_tensor(dets.boxes).reshape(-1, 4).numpy())
    return [{"image_id": image_id, "category_id": label + 1, "bbox": [round(float(v), 2) for v in box],
             "score": round(float(score), 4), "file_name": file_name, "category_name": class_names[label]}
            for box, label, score in zip(boxes, dets.labels.tolist(), dets.scores.tolist())]


def image_recall(dets: Detections, target: Mapping[str, Tensor], *, iou: float = 0.5, min_score: float = 0.5) -> float:
    """One image's score for the failure gallery: the share of its GT boxes (not difficult) that a detection of the
    same class with score >= ``min_score`` covers at IoU > ``iou`` (1 for an image without such boxes)."""
    from torchvision.ops import box_iou

    gt_boxes, gt_labels = target["boxes"], target["labels"]
    if "difficult" in target:  # only the boxes that count
        counted = ~torch.as_tensor(target["difficult"], dtype=torch.bool)
        gt_boxes, gt_labels = gt_boxes[counted], gt_labels[counted]
    if len(gt_boxes) == 0:
        return 1.0
    keep = dets.scores >= min_score
    if not bool(keep.any()):
        return 0.0
    overlap = box_iou(gt_boxes.float().cpu(), dets.boxes[keep].float())  # (G, D)
    same = gt_labels.cpu()[:, None] == dets.labels[keep][None, :]  # (G, D)
    return float(((overlap > iou) & same).any(dim=1).float().mean())


def class_colours(num: int) -> list[tuple[int, int, int]]:
    """A distinct RGB colour per class (VOC palette entries 1..num)."""
    from lowlabel.structures import voc_palette

    flat = voc_palette(num + 1)
    return [(flat[3 * c], flat[3 * c + 1], flat[3 * c + 2]) for c in range(1, num + 1)]


def draw_detections(
    image: np.ndarray, dets: Detections, class_names: Sequence[str], *, min_score: float = 0.5
) -> np.ndarray:
    """``image`` (H, W, 3) uint8 with the detections scoring >= ``min_score`` drawn: a box in its class colour and
    ``<class> <score>`` on it. Returns a new (H, W, 3) uint8 array."""
    from torchvision.utils import draw_bounding_boxes

    keep = dets.scores >= min_score
    canvas = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)  # (3, H, W) uint8
    if not bool(keep.any()):
        return np.ascontiguousarray(image).copy()
    labels = dets.labels[keep].tolist()
    palette = class_colours(max(len(class_names), 1))
    texts = [
        f"{class_names[c] if 0 <= c < len(class_names) else c} {s:.2f}"
        for c, s in zip(labels, dets.scores[keep].tolist())
    ]
    colours = [palette[c % len(palette)] for c in labels]
    drawn = draw_bounding_boxes(canvas, dets.boxes[keep], labels=texts, colors=colours, width=1)
    return drawn.permute(1, 2, 0).contiguous().numpy()
