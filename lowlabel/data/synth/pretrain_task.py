"""``pretrain/``: the ImageNet stand-in. Single-object images of 100 categories in the ImageNet folder layout.

::

    pretrain/classes.txt                       one folder name per line, in label order (sorted names)
    pretrain/{train,val}/<class>/<nnnnnn>.jpg

A category is a whole-object combination: **outline family** (10) x **body texture** (5, over the whole
body) x **colour range** (warm or cool hue), named ``<outline>-<texture>-<colour>`` (``star-dots-warm``).
Each image varies pose (any rotation), scale, aspect, outline deformation, texture phase, frequency and
orientation, saturation and brightness, background texture and clutter (smaller, flat, greyish distractors,
less saturated than any category, some in front of the object). There is no marking and no category-specific
context: only the whole object tells categories apart, which is what ImageNet labels are about.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lowlabel.data.synth.config import PretrainConfig, SceneStyle
from lowlabel.data.synth.io import save_jpeg, write_lines
from lowlabel.data.synth.parallel import pmap
from lowlabel.data.synth.render import ObjectSpec, hsv, paint_background, paint_object, photometric, pixel_grid

TASK_ID = 6
SPLITS = ("train", "val")
OUTLINES: tuple[str, ...] = (
    "ellipse", "rectangle", "triangle", "diamond", "star", "blob", "hexagon", "cross", "crescent", "ring",
)
TEXTURES: tuple[str, ...] = ("flat", "stripes", "checker", "dots", "blotch")
COLOUR_RANGES: dict[str, tuple[float, float]] = {"warm": (0.03, 0.09), "cool": (0.58, 0.09)}  # hue centre, half-width
DISTRACTOR_SHAPES: tuple[str, ...] = ("ellipse", "rectangle", "triangle", "diamond", "star", "blob")
MAX_HIDDEN = 0.4  # a front distractor that would hide more of the object than this is drawn behind it
_PHOTO = SceneStyle(color_jitter=0.15, noise_std=0.03)


def category_names() -> list[str]:
    """The 100 category folder names, sorted: a category's label is its index here (as ImageFolder's)."""
    return sorted(f"{o}-{t}-{c}" for o in OUTLINES for t in TEXTURES for c in COLOUR_RANGES)


def _texture(rng: np.random.Generator, kind: str) -> dict:
    """The category texture ``kind`` with this image's random orientation, frequency and phase."""
    tex: dict = {"kind": kind, "amp": 0.0 if kind == "flat" else float(rng.uniform(0.35, 0.5))}
    angle, phase = float(rng.uniform(0, np.pi)), float(rng.uniform(0, 6.3))
    if kind == "stripes":
        tex.update(angle=angle, freq=float(rng.uniform(1.4, 2.4)), phase=phase)
    elif kind == "checker":
        tex.update(angle=angle, freq=float(rng.uniform(1.1, 1.8)), phase=phase)
    elif kind == "dots":
        tex.update(angle=angle, freq=float(rng.uniform(2.0, 3.0)), phase=phase)
    elif kind == "blotch":
        tex["waves"] = [(float(rng.uniform(0, np.pi)), float(rng.uniform(0.4, 1.0)), float(rng.uniform(0, 6.3)))
                        for _ in range(3)]
    return tex


def _spec(rng: np.random.Generator, shape: str, rgb: tuple[float, float, float], texture: dict, cx: float, cy: float,
          size: float, deform: float) -> ObjectSpec:
    d = (float(rng.uniform(-deform, deform)), float(rng.uniform(0, 6.3)),
         float(rng.uniform(-deform, deform)), float(rng.uniform(0, 6.3)))
    return ObjectSpec(category=-1, shape=shape, cx=cx, cy=cy, size=size, aspect=float(rng.uniform(1.0, 1.5)),
                      angle=float(rng.uniform(0, 2 * np.pi)), rgb=rgb, texture=texture, deform=d)


def render_image(rng: np.random.Generator, name: str, cfg: PretrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """One image of category ``name``: ((H, W, 3) uint8 image, (H, W) bool visible object mask)."""
    outline, texture, colour = name.split("-")
    h, w = (int(rng.integers(cfg.image_size[0], cfg.image_size[1] + 1)) for _ in range(2))
    yy, xx = pixel_grid(h, w)
    img = paint_background(rng, yy, xx, None).astype(np.float32)
    size = float(rng.uniform(*cfg.object_scale)) * min(h, w) / 2.0  # half extent
    margin = size * 0.6
    cx, cy = float(rng.uniform(margin, max(margin, w - margin))), float(rng.uniform(margin, max(margin, h - margin)))
    centre, half = COLOUR_RANGES[colour]
    rgb = hsv(centre + float(rng.uniform(-half, half)), float(rng.uniform(0.45, 0.85)), float(rng.uniform(0.5, 0.9)))
    obj = _spec(rng, outline, rgb, _texture(rng, texture), cx, cy, size, cfg.deform)
    distractors = []
    for _ in range(int(rng.integers(cfg.distractors[0], cfg.distractors[1] + 1))):
        dsize = size * float(rng.uniform(0.3, 0.55))
        dx, dy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        drgb = hsv(float(rng.random()), float(rng.uniform(0.05, 0.3)), float(rng.uniform(0.35, 0.9)))  # greyish
        shape = DISTRACTOR_SHAPES[int(rng.integers(len(DISTRACTOR_SHAPES)))]
        flat = {"kind": "flat", "amp": 0.0}
        distractors.append((rng.random() < cfg.occlusion_prob, _spec(rng, shape, drgb, flat, dx, dy, dsize, 0.0)))
    body = paint_object(np.zeros_like(img), obj, yy, xx).body
    hidden = np.zeros_like(body)
    front = []
    for is_front, spec in distractors:
        mask = paint_object(np.zeros_like(img), spec, yy, xx).body
        if is_front and (body & (hidden | mask)).sum() <= MAX_HIDDEN * body.sum():
            hidden |= mask
            front.append(spec)
        else:
            paint_object(img, spec, yy, xx)
    paint_object(img, obj, yy, xx)
    for spec in front:
        paint_object(img, spec, yy, xx)
    return photometric(rng, img, _PHOTO), body & ~hidden


def _job(args: tuple) -> None:
    cfg, out, split, label, name, index, seed = args
    rng = np.random.default_rng([seed, TASK_ID, SPLITS.index(split), label, index])
    image, _ = render_image(rng, name, cfg)
    save_jpeg(out / split / name / f"{index:06d}.jpg", image)


def generate_pretrain(cfg: PretrainConfig, out: Path, seed: int, workers: int) -> None:
    """Write ``out`` (the ``pretrain/`` folder)."""
    names = category_names()
    write_lines(out / "classes.txt", names)
    counts = {"train": cfg.train_per_class, "val": cfg.val_per_class}
    for split in SPLITS:
        jobs = [(cfg, out, split, label, name, i, seed)
                for label, name in enumerate(names) for i in range(counts[split])]
        pmap(_job, jobs, workers)
