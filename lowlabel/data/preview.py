"""``lowlabel data preview <root> --out grid.png``: a labelled grid of samples with boxes, masks and captions."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from lowlabel.errors import DataError
from lowlabel.structures import voc_palette

TILE = 160
TEXT_H = 40
_PALETTE = np.asarray(voc_palette(), np.uint8).reshape(-1, 3)


@dataclass
class Sample:
    image: np.ndarray  # (H, W, 3) uint8
    title: str
    boxes: list[tuple[list[float], str]]  # xyxy in pixels, label
    mask: np.ndarray | None = None  # (H, W) uint8 class/object indices, 255 = ignore
    caption: str | None = None


def detect_format(root: Path) -> str:
    """Guess the dataset format of ``root`` from its layout."""
    if (root / "metadata").is_dir():
        return "wsol"
    if (root / "JPEGImages" / "480p").is_dir():
        return "davis"
    if (root / "ImageSets" / "Segmentation").is_dir():
        return "voc"
    if (root / "annotations").is_dir() and any((root / "annotations").glob("instances_*.json")):
        return "coco"
    if (root / "trainA").is_dir():
        return "domains"
    if (root / "train").is_dir() and any(p.is_dir() for p in (root / "train").iterdir()):
        return "imagenet"
    raise DataError(f"{root}: cannot tell the dataset format (no metadata/, JPEGImages/, annotations/, trainA/ or "
                    f"train/<class>/)")


def _np(x: object) -> np.ndarray:
    return np.asarray(x.numpy() if hasattr(x, "numpy") else x)


def samples_for(fmt: str, root: Path, n: int) -> list[Sample]:
    """Up to ``n`` samples of the dataset at ``root`` (evenly spread over the first split found)."""
    if fmt == "wsol":
        from lowlabel.data.wsol import shapesworld_wsol

        ds = shapesworld_wsol(root, "val")
        names = ds.class_names or []
        out = []
        for i in np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int):
            it = ds[int(i)]
            name = names[it["label"]] if names else str(it["label"])
            mask = None
            if ds.has_masks() or (root / "masks").is_dir():
                mds = shapesworld_wsol(root, "val", masks=True)
                m, ign = mds.load_masks(it["image_id"])
                mask = np.where(ign, 255, m.astype(np.uint8) * (it["label"] % 20 + 1)).astype(np.uint8)
            out.append(
                Sample(
                    _np(it["image"]).transpose(1, 2, 0),
                    f"{it['image_id']} {name}",
                    [(b.tolist(), name) for b in _np(it["boxes"])],
                    mask,
                )
            )
        return out
    if fmt == "voc":
        from lowlabel.data.voc import VOCSegmentation

        ds = VOCSegmentation(root=root, split="train")
        return [
            _det_sample(ds[int(i)], ds.class_names, key="box_labels", mask_key="mask")
            for i in np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int)
        ]
    if fmt == "coco":
        from lowlabel.data.coco import COCODetection

        ann = sorted((root / "annotations").glob("instances_*.json"))[-1]
        split = ann.stem.split("_", 1)[1]
        image_dir = next((c for c in (root / f"{split}2017", root / split) if c.is_dir()), root / split)
        cap = root / "annotations" / ann.name.replace("instances_", "captions_")
        ds = COCODetection(image_dir=image_dir, ann_file=ann, captions_file=cap if cap.is_file() else None)
        return [
            _det_sample(ds[int(i)], ds.class_names, key="labels")
            for i in np.linspace(0, len(ds) - 1, min(n, len(ds))).astype(int)
        ]
    if fmt == "davis":
        from lowlabel.data.davis import DAVIS2017

        ds = DAVIS2017(root=root, split="val")
        it = ds[0]
        t = it["frames"].shape[0]
        return [
            Sample(_np(it["frames"][k]).transpose(1, 2, 0), f"{it['name']} frame {k}", [], _np(it["masks"][k]))
            for k in np.linspace(0, t - 1, min(n, t)).astype(int)
        ]
    if fmt == "domains":
        from lowlabel.data.unpaired import shapesworld_domains

        out = []
        for split in ("trainA", "testB"):
            ds = shapesworld_domains(root, split)
            for i in range(min(n // 2, len(ds))):
                s = _det_sample(ds[i], ds.class_names, key="labels")
                s.title = f"{split} {s.title}"
                out.append(s)
        return out
    if fmt == "imagenet":
        from lowlabel.data.imagenet import index_split
        from lowlabel.data.io import load_rgb

        index = index_split(root, "val" if (root / "val").is_dir() else "train")
        picks = np.linspace(0, len(index.samples) - 1, min(n, len(index.samples))).astype(int)
        return [Sample(load_rgb(index.samples[i][0]), index.names[index.samples[i][1]], []) for i in picks]
    raise DataError(f"preview: unknown format {fmt!r}")


def _det_sample(it: dict, names: list[str], key: str, mask_key: str | None = None) -> Sample:
    boxes = [(b.tolist(), names[int(c)]) for b, c in zip(_np(it["boxes"]), _np(it[key]))]
    mask = _np(it[mask_key]) if mask_key and it.get(mask_key) is not None else None
    caps = it.get("captions") or []
    return Sample(_np(it["image"]).transpose(1, 2, 0), str(it["image_id"]), boxes, mask, caps[0] if caps else None)


def render_tile(s: Sample) -> Image.Image:
    h, w = s.image.shape[:2]
    scale = TILE / max(h, w)
    img = s.image.astype(np.float32)
    if s.mask is not None:
        colors = _PALETTE[s.mask].astype(np.float32)
        on = (s.mask > 0)[..., None]
        img = np.where(on, 0.5 * img + 0.5 * colors, img)
    im = Image.fromarray(img.astype(np.uint8)).resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.NEAREST)
    tile = Image.new("RGB", (TILE, TILE + TEXT_H), (24, 24, 24))
    tile.paste(im, (0, 0))
    draw = ImageDraw.Draw(tile)
    for k, (box, label) in enumerate(s.boxes):
        x0, y0, x1, y1 = (v * scale for v in box)
        color = tuple(int(c) for c in _PALETTE[(k % 20) + 1])
        draw.rectangle([x0, y0, x1, y1], outline=color, width=2)
        draw.text((x0 + 2, y0 + 1), label, fill=color)
    text = s.title + ("\n" + "\n".join(textwrap.wrap(s.caption, 30)[:2]) if s.caption else "")
    draw.multiline_text((2, TILE + 1), text, fill=(230, 230, 230), spacing=1)
    return tile


def preview(root: str | Path, out: str | Path, *, n: int = 16, fmt: str | None = None, cols: int = 4) -> Path:
    """Write a grid PNG of ``n`` samples; for a ShapesWorld root, ``n`` samples of each of its folders."""
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise DataError(f"{root}: dataset root not found")
    if fmt is None and (root / "manifest.json").is_file():
        samples = [
            s
            for kind, fmt_name in (("wsol", "wsol"), ("voc", "voc"), ("coco", "coco"), ("davis", "davis"),
                                   ("domains", "domains"), ("pretrain", "imagenet"))
            if (root / kind).is_dir()
            for s in samples_for(fmt_name, root / kind, cols)
        ]
    else:
        samples = samples_for(fmt or detect_format(root), root, n)
    if not samples:
        raise DataError(f"{root}: no samples to draw")
    tiles = [render_tile(s) for s in samples]
    rows = (len(tiles) + cols - 1) // cols
    grid = Image.new("RGB", (cols * TILE, rows * (TILE + TEXT_H)), (0, 0, 0))
    for i, t in enumerate(tiles):
        grid.paste(t, ((i % cols) * TILE, (i // cols) * (TILE + TEXT_H)))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out
