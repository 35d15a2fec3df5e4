"""Qualitative panels: one drawing function per sample ``kind``, in one dict.

A sample is what :func:`lowlabel.samples.load_sample` returns: a dict with ``kind``,
``image_id``, ``image`` (uint8 H×W×3) and kind-specific arrays. A panel function turns it into a
:class:`Panel`: a row of titled RGB tiles, a colour legend and a caption. The HTML writer saves the
tiles as PNG files and escapes every string, so panel functions only draw pixels and return text.

A later method plugs in its own picture type with one line::

    PANELS["propagation"] = draw_propagation   # def draw_propagation(sample) -> Panel

and writes samples with ``save_sample(out_dir, image_id, "propagation", image, frames=..., ...)``.
Kinds without an entry are shown as the plain image with a note.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from lowlabel.structures import IGNORE_INDEX, voc_palette

RGB = tuple[int, int, int]
GT_COLOR: RGB = (0, 220, 0)
PRED_COLOR: RGB = (255, 40, 40)
MIN_TILE_SIZE = 160  # tiles of small images are upscaled (nearest) to at least this many pixels


@dataclass
class Tile:
    """One picture of a panel: ``image`` is uint8 (H, W, 3)."""

    title: str
    image: np.ndarray


@dataclass
class Panel:
    """What a panel function returns: tiles shown left to right, a legend and a caption (plain text)."""

    tiles: list[Tile]
    legend: list[tuple[str, RGB]] = field(default_factory=list)
    caption: str = ""


PanelFn = Callable[[Mapping[str, Any]], Panel]


def draw_panel(sample: Mapping[str, Any]) -> Panel:
    """The panel of ``sample`` drawn by ``PANELS[sample["kind"]]`` (a plain image for unknown kinds)."""
    kind = str(sample.get("kind", ""))
    fn = PANELS.get(kind)
    if fn is None:
        panel = draw_image_only(sample)
        panel.caption += f" (no panel for kind {kind!r})"
        return panel
    return fn(sample)


def draw_image_only(sample: Mapping[str, Any]) -> Panel:
    """The sample's image alone."""
    image, _ = _upscale(_rgb(sample["image"]))
    return Panel(tiles=[Tile("image", image)], caption=sample_caption(sample))


def draw_localization(sample: Mapping[str, Any]) -> Panel:
    """Image with GT boxes, and the heat map overlaid with GT (green) and predicted (red) boxes; GT mask if any."""
    image = _rgb(sample["image"])
    h, w = image.shape[:2]
    heat = _resize_float(np.asarray(sample["heatmap"], dtype=np.float32), (h, w))
    big, scale = _upscale(image)
    overlay, _ = _upscale(overlay_heatmap(image, heat))
    gt = np.asarray(sample.get("gt_boxes", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
    pred = np.asarray(sample.get("pred_boxes", np.zeros((0, 4))), dtype=np.float64).reshape(-1, 4)
    tiles = [
        Tile("image + GT", draw_boxes(big, gt * scale, GT_COLOR, scale=scale)),
        Tile("heat map + boxes", draw_boxes(draw_boxes(overlay, gt * scale, GT_COLOR, scale=scale),
                                            pred * scale, PRED_COLOR, scale=scale)),
    ]
    if sample.get("gt_mask") is not None:
        mask = (np.asarray(sample["gt_mask"]) > 0).astype(np.uint8) * 255  # (H, W) -> grey (H, W, 3)
        tiles.append(Tile("GT mask", _upscale(np.repeat(mask[:, :, None], 3, axis=2))[0]))
    legend = [("GT box", GT_COLOR), ("predicted box", PRED_COLOR)]
    return Panel(tiles=tiles, legend=legend, caption=sample_caption(sample))


def draw_segmentation(sample: Mapping[str, Any]) -> Panel:
    """Image, seed, pseudo mask (if any) and GT side by side in VOC colours, with a legend of the classes shown."""
    image = _rgb(sample["image"])
    names = [str(n) for n in np.asarray(sample.get("class_names", []), dtype=str).reshape(-1)]
    masks = [(title, np.asarray(sample[key], dtype=np.uint8)) for key, title in
             (("seed", "seed"), ("pseudo", "pseudo mask"), ("gt", "ground truth")) if sample.get(key) is not None]
    tiles = [Tile("image", _upscale(image)[0])]
    tiles += [Tile(title, _upscale(colorize(mask))[0]) for title, mask in masks]
    present = sorted(set().union(*(np.unique(m).tolist() for _, m in masks))) if masks else []
    palette = palette_colors()
    legend = [(_class_name(c, names), palette[c]) for c in present]
    return Panel(tiles=tiles, legend=legend, caption=sample_caption(sample))


def draw_propagation(sample: Mapping[str, Any]) -> Panel:
    """A strip of frames of one sequence with the propagated masks overlaid (object colours), then the GT of the last
    frame shown."""
    frames = np.asarray(sample["frames"], dtype=np.uint8)
    preds = np.asarray(sample["pred"], dtype=np.uint8)
    names = [str(n) for n in np.asarray(sample.get("frame_names", []), dtype=str).reshape(-1)]
    palette = np.asarray(palette_colors(), dtype=np.float32)
    tiles = []
    for i, (frame, pred) in enumerate(zip(frames, preds)):
        tint = np.where((pred > 0)[..., None], 0.45 * frame + 0.55 * palette[pred], frame).astype(np.uint8)
        tiles.append(Tile(f"frame {names[i] if i < len(names) else i}", _upscale(tint)[0]))
    if sample.get("gt") is not None:
        gt = np.asarray(sample["gt"], dtype=np.uint8)[-1]
        tiles.append(Tile("ground truth (last frame)", _upscale(colorize(gt))[0]))
    objects = sorted(set(np.unique(preds).tolist()) - {0})
    legend = [(f"object {k}", palette_colors()[k]) for k in objects]
    return Panel(tiles=tiles, legend=legend, caption=sample_caption(sample))


DETECTION_MIN_SCORE = 0.5  # detections drawn in panels (all of them are scored)


def detection_tile(title: str, image: np.ndarray, gt: Any, pred: Any, scores: Any) -> Tile:
    """``image`` upscaled with GT boxes (green) and the detections scoring >= 0.5 (red); boxes inclusive xyxy."""
    big, scale = _upscale(_rgb(image))
    gt = np.asarray(gt if gt is not None else np.zeros((0, 4)), dtype=np.float64).reshape(-1, 4)
    pred = np.asarray(pred if pred is not None else np.zeros((0, 4)), dtype=np.float64).reshape(-1, 4)
    if scores is not None:
        pred = pred[np.asarray(scores, dtype=np.float64).reshape(-1) >= DETECTION_MIN_SCORE]
    drawn = draw_boxes(draw_boxes(big, gt * scale, GT_COLOR, scale=scale), pred * scale, PRED_COLOR, scale=scale)
    return Tile(title, drawn)


def draw_detection(sample: Mapping[str, Any]) -> Panel:
    """The image with GT boxes and the detections scoring >= 0.5 (``detector``). A sample with ``novel_classes``
    (one flag per entry of ``class_names``, open-vocabulary ``ovd``) is drawn by :func:`draw_open_vocab`."""
    if sample.get("novel_classes") is not None:
        return draw_open_vocab(sample)
    tile = detection_tile("detections", sample["image"], sample.get("gt_boxes"), sample.get("pred_boxes"),
                          sample.get("pred_scores"))
    legend = [("GT box", GT_COLOR), (f"detection (score >= {DETECTION_MIN_SCORE})", PRED_COLOR)]
    return Panel(tiles=[tile], legend=legend, caption=sample_caption(sample))


NOVEL_GT_COLOR: RGB = (255, 200, 0)
NOVEL_PRED_COLOR: RGB = (230, 0, 230)


def draw_open_vocab(sample: Mapping[str, Any]) -> Panel:
    """Open-vocabulary detections with the novel classes (no training box) highlighted: base GT green, novel GT
    gold, detections (score >= 0.5) red for a base class and magenta for a novel one, each named with its score.
    ``gt_labels`` / ``pred_labels`` index ``class_names`` (0-based) and ``novel_classes`` flags them."""
    names = [str(n) for n in np.asarray(sample.get("class_names", [])).reshape(-1).tolist()]
    novel = np.asarray(sample["novel_classes"], dtype=bool).reshape(-1)
    big, scale = _upscale(_rgb(sample["image"]))
    gt, gt_labels = _boxes_and_labels(sample, "gt")
    pred, pred_labels = _boxes_and_labels(sample, "pred")
    scores = np.asarray(sample.get("pred_scores", np.ones(len(pred))), dtype=np.float64).reshape(-1)
    keep = scores >= DETECTION_MIN_SCORE
    pred, pred_labels, scores = pred[keep], pred_labels[keep], scores[keep]

    def is_novel(labels: np.ndarray) -> np.ndarray:
        return np.array([0 <= k < len(novel) and bool(novel[k]) for k in labels.tolist()], dtype=bool)

    gt_novel, pred_novel = is_novel(gt_labels), is_novel(pred_labels)
    for boxes, flags, colors in ((gt, gt_novel, (GT_COLOR, NOVEL_GT_COLOR)),
                                 (pred, pred_novel, (PRED_COLOR, NOVEL_PRED_COLOR))):
        big = draw_boxes(big, boxes[~flags] * scale, colors[0], scale=scale)
        big = draw_boxes(big, boxes[flags] * scale, colors[1], scale=scale)
    pil = Image.fromarray(big)
    draw = ImageDraw.Draw(pil)
    inset = max(2, scale // 2) + 1  # inside the outline
    for (x0, y0, _, _), label, score, flag in zip(pred * scale, pred_labels.tolist(), scores.tolist(), pred_novel):
        text, at = f"{_class_name(label, names)} {score:.2f}", (x0 + inset, y0 + inset)
        draw.rectangle(draw.textbbox(at, text), fill=(0, 0, 0))  # readable on any scene
        draw.text(at, text, fill=NOVEL_PRED_COLOR if flag else PRED_COLOR)
    legend = [("GT box, base class", GT_COLOR), ("GT box, novel class", NOVEL_GT_COLOR),
              (f"detection of a base class (score >= {DETECTION_MIN_SCORE})", PRED_COLOR),
              (f"detection of a novel class (score >= {DETECTION_MIN_SCORE})", NOVEL_PRED_COLOR)]
    caption = sample_caption(sample)
    present = sorted({_class_name(k, names) for k in gt_labels[gt_novel].tolist()})
    found = sorted({_class_name(k, names) for k in pred_labels[pred_novel].tolist()})
    caption += f" · novel in the image: {', '.join(present) or 'none'} · novel detected: {', '.join(found) or 'none'}"
    return Panel(tiles=[Tile("open-vocabulary detections", np.asarray(pil))], legend=legend, caption=caption)


def _boxes_and_labels(sample: Mapping[str, Any], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """``<prefix>_boxes`` (N, 4) and ``<prefix>_labels`` (N,) of a sample (empty when absent)."""
    boxes = sample.get(f"{prefix}_boxes")
    boxes = np.asarray(boxes if boxes is not None else np.zeros((0, 4)), dtype=np.float64).reshape(-1, 4)
    labels = sample.get(f"{prefix}_labels")
    labels = np.asarray(labels if labels is not None else np.full(len(boxes), -1), dtype=np.int64).reshape(-1)
    if len(labels) != len(boxes):
        raise ValueError(f"sample {sample.get('image_id', '')}: {len(boxes)} {prefix} boxes but {len(labels)} labels")
    return boxes, labels


def draw_translation(sample: Mapping[str, Any]) -> Panel:
    """Target image, its translation and its clean twin (when there is one), each with the frozen detector's
    detections (red, score >= 0.5) and the GT boxes (green) (``cut``, ``lgcl``)."""
    views = [("target", "image", "raw"), ("translated", "translated", "translated"), ("clean twin", "clean", "clean")]
    tiles = [detection_tile(title, sample[key], sample.get("gt_boxes"), sample.get(f"{prefix}_boxes"),
                            sample.get(f"{prefix}_scores"))
             for title, key, prefix in views if sample.get(key) is not None]
    legend = [("GT box", GT_COLOR), (f"detection (score >= {DETECTION_MIN_SCORE})", PRED_COLOR)]
    return Panel(tiles=tiles, legend=legend, caption=sample_caption(sample))


PANELS: dict[str, PanelFn] = {
    "localization": draw_localization,
    "segmentation": draw_segmentation,
    "propagation": draw_propagation,
    "detection": draw_detection,
    "translation": draw_translation,
}


def sample_caption(sample: Mapping[str, Any]) -> str:
    """``image_id`` plus the optional ``label``/``caption`` text fields of the sample (not escaped)."""
    parts = [str(sample.get("image_id", ""))]
    parts += [f"{key}: {sample[key]}" for key in ("label", "caption") if isinstance(sample.get(key), str)]
    return " · ".join(p for p in parts if p)


def palette_colors() -> list[RGB]:
    """The VOC palette as 256 ``(r, g, b)`` tuples (index 255 is the cream ignore colour)."""
    flat = voc_palette(256)
    return [(flat[3 * i], flat[3 * i + 1], flat[3 * i + 2]) for i in range(256)]


def colorize(mask: np.ndarray) -> np.ndarray:
    """Class-index mask (H, W) uint8 -> RGB (H, W, 3) uint8 in VOC colours."""
    lut = np.asarray(palette_colors(), dtype=np.uint8)  # (256, 3)
    return lut[np.asarray(mask, dtype=np.uint8)]


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a ``jet`` colouring of ``heat`` (H, W) in [0, 1] over ``image`` (H, W, 3) uint8."""
    from matplotlib import colormaps

    colored = colormaps["jet"](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0  # (H, W, 4) -> (H, W, 3)
    return (alpha * colored + (1 - alpha) * image.astype(np.float64)).round().astype(np.uint8)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, color: RGB, *, scale: int = 1) -> np.ndarray:
    """Outline ``boxes`` (N, 4) xyxy inclusive pixels of an image upscaled by ``scale`` (already multiplied)."""
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    width = max(2, scale // 2)  # the page shows tiles at ~170 CSS px, so 1-px lines would vanish
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        # An inclusive corner x1 of the original image ends at the last upscaled pixel of that column.
        draw.rectangle([x0, y0, x1 + scale - 1, y1 + scale - 1], outline=color, width=width)
    return np.asarray(pil)


def _class_name(cid: int, names: list[str]) -> str:
    if cid == IGNORE_INDEX:
        return "ignore"
    return names[cid] if 0 <= cid < len(names) else f"class {cid}"


def _rgb(image: Any) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"sample image must be uint8 HxWx3, got {arr.dtype} {arr.shape}")
    return arr


def _upscale(image: np.ndarray) -> tuple[np.ndarray, int]:
    """Nearest-neighbour upscale by the integer factor that makes the long side >= MIN_TILE_SIZE."""
    scale = max(1, math.ceil(MIN_TILE_SIZE / max(image.shape[:2])))
    if scale == 1:
        return np.ascontiguousarray(image), 1
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1), scale  # (sH, sW, 3)


def _resize_float(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if heat.shape == size:
        return heat
    pil = Image.fromarray(heat.astype(np.float32)).resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(pil, dtype=np.float32)
