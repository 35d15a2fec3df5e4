"""What the open-vocabulary stages share: the COCO-layout files, CLIP's input (letterboxed, CLIP-normalised),
image-caption pairs, GT-box crops and the zero-shot scores of a CLIP on images and regions.

Images are letterboxed, not centre-cropped: the longer side is resized to the model's input size and the rest is
filled with CLIP's mean colour (zero after normalisation). A centre crop would cut off objects that the captions
name (ShapesWorld objects reach the image border) and the GT boxes of the region protocol.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from lowlabel.data.coco import COCODetection, load_ovd_split
from lowlabel.errors import DataError, UserError
from lowlabel.metrics.multilabel import mean_average_precision
from lowlabel.models.clip import (
    CLIP_MEAN,
    CLIP_STD,
    TORCHSCRIPT_EXTRAS,
    build_clip,
    image_embeddings,
    load_clip_state,
    tokenize,
)
from lowlabel.models.weights import Weights, read_stage, single_network


@dataclass
class COCOFilesConfig:
    """A COCO-layout folder: images, instances and captions per split, and the open-vocabulary split file.

    ``{split}`` in the patterns becomes the split name (``train``, ``val``). ShapesWorld ``coco/`` uses the defaults;
    real COCO 2017 names its files ``annotations/captions_{split}2017.json``.
    """

    root: str = "synth:full"  # a COCO-layout folder, or synth:<preset>[:<seed>] (ShapesWorld coco/)
    images: str = "{split}2017"
    instances: str = "annotations/instances_{split}.json"
    captions: str = "annotations/captions_{split}.json"
    ovd_split: str = "annotations/ovd_split.json"  # {"base": [ids], "novel": [ids]}; "" = no base/novel split
    # prompt names for categories whose annotation name is not how captions say it (VOC's "diningtable")
    names: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("images", "instances", "captions"):
            if not getattr(self, key):
                raise ValueError(f"data.{key} must name a path under data.root")


def coco_root(cfg: COCOFilesConfig) -> Path:
    from lowlabel.data import resolve_root

    return Path(resolve_root(cfg.root, "coco"))


def coco_path(root: Path, pattern: str, split: str) -> Path:
    """``root / pattern`` with ``{split}`` filled in."""
    return root / pattern.replace("{split}", split)


def _existing(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{path}: no such {what} (set data.root or the data file patterns)")
    return path


def caption_dataset(root: Path, cfg: COCOFilesConfig, split: str) -> COCODetection:
    """The images of ``split`` with their captions (no boxes)."""
    return COCODetection(image_dir=_existing(coco_path(root, cfg.images, split), "image folder"), ann_file=None,
                         captions_file=_existing(coco_path(root, cfg.captions, split), "captions file"))


def instance_dataset(root: Path, cfg: COCOFilesConfig, split: str) -> COCODetection:
    """The images of ``split`` with their boxes of every category (no captions)."""
    return COCODetection(image_dir=_existing(coco_path(root, cfg.images, split), "image folder"),
                         ann_file=_existing(coco_path(root, cfg.instances, split), "instances file"))


@dataclass
class Categories:
    """The categories of an instances file, in id order.

    Attributes:
        ids: COCO category ids.
        names: their annotation names.
        prompt_names: the names put into prompts (``data.names`` renames).
        novel: (C,) bool, True for the novel categories of the split file (all False without one).
    """

    ids: list[int]
    names: list[str]
    prompt_names: list[str]
    novel: Tensor


def categories(dataset: COCODetection, cfg: COCOFilesConfig, root: Path) -> Categories:
    """The categories of ``dataset`` and which are novel.

    Raises:
        DataError: a rename or a split-file id names a category the annotations do not have.
    """
    unknown = sorted(set(cfg.names) - set(dataset.class_names))
    if unknown:
        raise DataError(f"data.names renames {unknown[0]!r}, which is not a category of the annotations "
                        f"({', '.join(dataset.class_names)})")
    novel = torch.zeros(len(dataset.cat_ids), dtype=torch.bool)
    if cfg.ovd_split:
        path = _existing(root / cfg.ovd_split, "open-vocabulary split file")
        split = load_ovd_split(path)
        missing = sorted((set(split["base"]) | set(split["novel"])) - set(dataset.cat_ids))
        if missing:
            raise DataError(f"{path}: category id {missing[0]} is not in the annotations")
        novel = torch.tensor([cid in set(split["novel"]) for cid in dataset.cat_ids])
    return Categories(ids=list(dataset.cat_ids), names=list(dataset.class_names),
                      prompt_names=[cfg.names.get(n, n) for n in dataset.class_names], novel=novel)


# --- CLIP input --------------------------------------------------------------------------------------------------


def letterbox(image: Tensor, size: int) -> Tensor:
    """A uint8 ``(3, H, W)`` image as CLIP's normalised ``(3, size, size)`` input: the longer side resized to
    ``size`` (bilinear, antialiased), centred, the border at CLIP's mean colour (0 after normalisation)."""
    x = torch.as_tensor(image).float() / 255.0  # (3, H, W) in [0, 1]
    h, w = x.shape[-2:]
    nh, nw = max(1, round(h * size / max(h, w))), max(1, round(w * size / max(h, w)))
    x = F.interpolate(x[None], size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)[0]
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    out = x.new_zeros(3, size, size)
    top, left = (size - nh) // 2, (size - nw) // 2
    out[:, top:top + nh, left:left + nw] = (x - mean) / std
    return out


def crop_box(image: Tensor, box: Tensor, context: float = 1.0) -> Tensor:
    """The pixels of ``box`` (xyxy, exclusive extents, in pixels) scaled by ``context`` about its centre and clipped
    to the image; at least one pixel. ``image`` is ``(3, H, W)``."""
    h, w = image.shape[-2:]
    x0, y0, x1, y1 = (float(v) for v in box)
    cx, cy, half_w, half_h = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * context / 2, (y1 - y0) * context / 2
    left = min(max(0, math.floor(cx - half_w)), w - 1)
    top = min(max(0, math.floor(cy - half_h)), h - 1)
    right = max(left + 1, min(w, math.ceil(cx + half_w)))
    bottom = max(top + 1, min(h, math.ceil(cy + half_h)))
    return image[:, top:bottom, left:right]


class CaptionPairs(Dataset):
    """Image-caption pairs: ``{"image": (3, S, S) float, "tokens": (L,) int64}``, one item per image with a caption.

    Each access draws one of the image's captions at random (RegionCLIP, methods.md 4a.6: "one caption is picked at
    random if there are several"), so two captions of one image never meet as negatives in a batch. With ``flip``
    the image is mirrored half of the time (captions say nothing about left and right).
    """

    def __init__(self, dataset: COCODetection, *, size: int, context_length: int, flip: bool) -> None:
        self.dataset, self.size, self.context_length, self.flip = dataset, size, context_length, flip
        self.indices = [i for i, img_id in enumerate(dataset.ids) if dataset.captions[img_id]]
        if not self.indices:
            raise DataError(f"{dataset.image_dir}: no image of this split has a caption")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        item = self.dataset[self.indices[i]]
        captions = item["captions"]
        text = captions[int(torch.randint(len(captions), ()))]
        image = letterbox(item["image"], self.size)
        if self.flip and bool(torch.rand(()) < 0.5):
            image = image.flip(-1)
        return {"image": image, "tokens": tokenize([text], self.context_length)[0]}


# --- zero-shot evaluation ----------------------------------------------------------------------------------------


@dataclass
class ZeroShotScores:
    """Cosine similarities of a CLIP's image and region embeddings to the class embeddings of one split.

    Attributes:
        image_ids: (N,) COCO image ids.
        image_scores: (N, C) cosine similarity of each whole (letterboxed) image to each class.
        image_labels: (N, C) bool, the classes with at least one box in the image.
        region_scores: (R, C) cosine similarity of each GT-box crop to each class.
        region_labels: (R,) class index of each GT box.
    """

    image_ids: list[int]
    image_scores: Tensor
    image_labels: Tensor
    region_scores: Tensor
    region_labels: Tensor


@torch.no_grad()
def zero_shot_scores(model: Any, dataset: COCODetection, class_emb: Tensor, *, size: int, context: float = 1.0,
                     batch_size: int = 64) -> ZeroShotScores:
    """Embed every image of ``dataset`` and the crop of each of its GT boxes, and score them against ``class_emb``
    ((C, D) unit vectors, columns in ``dataset``'s category order)."""
    num_classes = class_emb.shape[0]
    ids, img_scores, img_labels, reg_scores, reg_labels = [], [], [], [], []
    images: list[Tensor] = []
    crops: list[Tensor] = []

    def flush(force: bool) -> None:
        for pending, out in ((images, img_scores), (crops, reg_scores)):
            while pending and (force or len(pending) >= batch_size):
                chunk = torch.stack(pending[:batch_size])  # (<= batch, 3, S, S)
                del pending[:batch_size]
                out.append(image_embeddings(model, chunk) @ class_emb.t())  # (<= batch, C)

    for index in range(len(dataset)):
        item = dataset[index]
        image, labels = torch.as_tensor(item["image"]), item["labels"]
        ids.append(int(item["image_id"]))
        images.append(letterbox(image, size))
        img_labels.append(torch.zeros(num_classes, dtype=torch.bool).index_fill_(0, labels, True))
        for box, label in zip(torch.as_tensor(item["boxes"]), labels):
            crops.append(letterbox(crop_box(image, box, context), size))
            reg_labels.append(int(label))
        flush(force=False)
    flush(force=True)
    empty = torch.zeros(0, num_classes)
    return ZeroShotScores(
        image_ids=ids, image_scores=torch.cat(img_scores).cpu() if img_scores else empty,
        image_labels=torch.stack(img_labels) if img_labels else empty.bool(),
        region_scores=torch.cat(reg_scores).cpu() if reg_scores else empty,
        region_labels=torch.tensor(reg_labels, dtype=torch.int64))


def _percent(hits: Tensor) -> float | None:
    return 100.0 * float(hits.float().mean()) if hits.numel() else None


def zero_shot_metrics(scores: ZeroShotScores, novel: Tensor) -> tuple[dict[str, float], dict[str, list[float | None]]]:
    """Image- and region-level zero-shot numbers (percent), over all classes together (the generalized setting).

    * ``image_mAP``: mean over classes of the average precision of ranking the images by that class's score
      (:func:`lowlabel.metrics.multilabel.mean_average_precision`), the multi-label score; ``image_mAP_base`` and
      ``image_mAP_novel`` average the same per-class APs over base and novel classes.
    * ``image_top1``: accuracy of the top class on the images whose boxes are all of one class (a single-label image
      has one right answer; on the others the top class is only one of several right ones).
    * ``region_acc``, ``region_acc_base``, ``region_acc_novel``: accuracy of the top class over the crops of GT boxes
      of all, base and novel classes, every class competing (as RegionCLIP's zero-shot inference, methods.md 4a''.)
    * ``region_acc_novel_only``: novel crops with only the novel classes competing, the easier protocol (which gives
      the near-zero-AP confusion of methods.md 4d when it is mistaken for the generalized one).

    A key whose subset is empty (no novel class, no single-label image) is left out.

    Returns:
        (metrics, per-class lists ``{"AP": [...], "region_acc": [...]}`` in class order, None where undefined).
    """
    metrics: dict[str, float] = {}
    mean_ap, aps = mean_average_precision(scores.image_scores.numpy(), scores.image_labels.numpy())
    ap = torch.tensor(aps, dtype=torch.float64)
    groups = {"": torch.ones_like(novel), "_base": ~novel, "_novel": novel}
    for suffix, cols in groups.items():
        valid = cols & ~ap.isnan()
        if valid.any():
            metrics[f"image_mAP{suffix}"] = 100.0 * float(ap[valid].mean())
    single = scores.image_labels.sum(dim=1) == 1
    top1 = _percent(scores.image_scores[single].argmax(dim=1) == scores.image_labels[single].float().argmax(dim=1))
    if top1 is not None:
        metrics["image_top1"] = top1
    pred, truth = scores.region_scores.argmax(dim=1), scores.region_labels
    hit = pred == truth
    is_novel = novel[truth] if truth.numel() else torch.zeros(0, dtype=torch.bool)
    for suffix, rows in {"": torch.ones_like(hit), "_base": ~is_novel, "_novel": is_novel}.items():
        acc = _percent(hit[rows])
        if acc is not None:
            metrics[f"region_acc{suffix}"] = acc
    if is_novel.any():
        novel_cols = novel.nonzero().flatten()  # (K,) column of each novel class
        among = novel_cols[scores.region_scores[is_novel][:, novel_cols].argmax(dim=1)]
        metrics["region_acc_novel_only"] = _percent(among == truth[is_novel])  # type: ignore[assignment]
    per_class_acc = [_percent(hit[truth == c]) for c in range(len(novel))]
    per_class_ap = [None if math.isnan(v) else 100.0 * v for v in aps]
    return metrics, {"AP": per_class_ap, "region_acc": per_class_acc}


def image_recall_at_k(scores: ZeroShotScores) -> np.ndarray:
    """(N,) per-image score for the failure gallery: the share of an image's classes among its top-k classes, k the
    number of its classes (100 = every class present outranks every absent one); NaN for an image without boxes."""
    labels = scores.image_labels
    k = labels.sum(dim=1)  # (N,)
    order = scores.image_scores.argsort(dim=1, descending=True)  # (N, C) classes by score
    ranked = labels.gather(1, order)  # (N, C) True where the r-th best class is present
    inside = torch.arange(labels.shape[1])[None, :] < k[:, None]  # (N, C) the first k ranks
    found = (ranked & inside).sum(dim=1).float()
    return torch.where(k > 0, 100.0 * found / k.clamp(min=1), torch.nan).numpy()


# --- an earlier stage's CLIP -------------------------------------------------------------------------------------


def recorded_clip_settings(weights: Weights, *, stage: str, depth: int = 0) -> dict[str, Any]:
    """The CLIP model settings (arch, image_size, context_length) a clip or regionclip run records; a regionclip run
    that leaves them to its teacher is followed to its own ``init_from``."""
    config = weights.config or {}
    model = dict(config.get("model") or {}) if weights.method in ("clip", "regionclip") else {}
    if weights.method == "regionclip" and not model.get("arch") and config.get("init_from") and depth < 3:
        try:
            teacher = read_stage(config["init_from"], stage=stage, accepts=("clip",))
        except (FileNotFoundError, UserError):
            return model
        inner = recorded_clip_settings(teacher, stage=stage, depth=depth + 1)
        return {key: model.get(key) or inner.get(key) for key in ("arch", "image_size", "context_length")}
    return model


def load_clip_stage(init_from: str, *, stage: str, accepts: tuple[str, ...], hint: str, arch: str = "",
                    image_size: int = 0, context_length: int = 0) -> tuple[Any, Weights]:
    """The CLIP of an earlier stage's run (or a weights file with ``arch``), built and loaded: (model, its weights).
    Settings left 0 / "" come from what the run records (:func:`recorded_clip_settings`).

    Raises:
        UserError: one line: a missing run (with ``hint``, the command that makes one), a run of another method, no
            arch for a bare weights file, or weights that do not fit (e.g. another embedding width).
    """
    try:
        weights = read_stage(init_from, stage=stage, accepts=accepts)
    except FileNotFoundError as err:
        raise UserError(f"{err} ({hint})") from None
    recorded = recorded_clip_settings(weights, stage=stage)
    arch = arch or recorded.get("arch", "")
    if not arch:
        raise UserError(f"{weights.file}: records no CLIP arch; set model.arch (e.g. RN50-quickgelu)")
    model = build_clip(arch=arch, image_size=image_size or int(recorded.get("image_size") or 0),
                       context_length=context_length or int(recorded.get("context_length") or 0))
    try:
        state = single_network(weights, weights.file)
    except ValueError as err:
        raise UserError(str(err)) from None
    state = {k.removeprefix("module."): v for k, v in state.items() if k not in TORCHSCRIPT_EXTRAS}
    load_clip_state(model, state, source=weights.file)
    return model, weights


def write_top_classes(classify: Any, names: Sequence[str], nets: Any, inputs: Path, out: Path) -> None:
    """``out/predictions.json``: the five most likely of ``names`` (with probabilities) for every image of ``inputs``,
    ``classify(nets, images) -> list[Classification]`` deciding (the clip and regionclip stages' ``predict``)."""
    from lowlabel.methods.predict import predict_files

    def row(_out: Path, path: Path, _stem: str, _image: Any, pred: Any) -> dict[str, Any]:
        top = pred.probs.topk(min(5, len(pred.probs)))
        return {"image": str(path), "label": pred.label, "name": names[pred.label], "score": pred.score,
                "top": [[names[i], v] for v, i in zip(top.values.tolist(), top.indices.tolist())]}

    rows = predict_files(classify, nets, Path(inputs), Path(out), row)
    (Path(out) / "predictions.json").write_text(json.dumps(rows, indent=1))
