"""Composing a ShapesWorld still image: background, objects, distractors, photometric nuisances."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lowlabel.data.synth.config import ObjectStyle, SceneStyle
from lowlabel.data.synth.render import (
    ObjectSpec,
    paint_background,
    paint_object,
    photometric,
    pixel_grid,
    sample_object,
)

Array = np.ndarray


@dataclass
class Instance:
    """One labelled object of a scene: ``visible`` and ``marking`` are (H, W) bool masks."""

    category: int
    spec: ObjectSpec
    visible: Array
    marking: Array  # amodal marking region (diagnosis of partial activation)


@dataclass
class Scene:
    image: Array  # (H, W, 3) uint8
    instances: list[Instance]
    habitat: int | None


def image_size(rng: np.random.Generator, scene: SceneStyle) -> tuple[int, int]:
    lo, hi = scene.image_size
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def _place(rng: np.random.Generator, h: int, w: int, scene: SceneStyle) -> tuple[float, float, float]:
    size = float(rng.uniform(*scene.object_scale)) * min(h, w) / 2.0  # half extent
    m = size * 0.6
    cx = float(rng.uniform(min(m, w / 2), max(w - m, w / 2)))
    cy = float(rng.uniform(min(m, h / 2), max(h - m, h / 2)))
    return cx, cy, size


def compose(
    rng: np.random.Generator,
    categories: list[int],
    obj: ObjectStyle,
    scene: SceneStyle,
    size: tuple[int, int] | None = None,
    min_visible: float = 0.4,
) -> Scene:
    """Render a scene with one object per entry of ``categories`` (drawn in that order).

    Objects are re-placed (up to a few tries) until each keeps ``min_visible`` of its area visible.
    """
    h, w = size if size is not None else image_size(rng, scene)
    yy, xx = pixel_grid(h, w)
    habitat = categories[0] if categories and rng.random() < scene.context_prob else None
    canvas = paint_background(rng, yy, xx, habitat).astype(np.float32)
    n_dis = int(rng.integers(scene.distractors[0], scene.distractors[1] + 1))
    dis_specs = []
    for _ in range(n_dis):
        cx, cy, s = _place(rng, h, w, scene)
        front = rng.random() < scene.occlusion_prob
        dis_specs.append((front, sample_object(rng, -1, obj, cx, cy, s * rng.uniform(0.5, 0.9), scene.max_rotation)))
    specs = []
    for cat in categories:
        cx, cy, s = _place(rng, h, w, scene)
        specs.append(sample_object(rng, cat, obj, cx, cy, s, scene.max_rotation))
    for attempt in range(6):  # re-place objects that end up mostly hidden
        img, instances = _draw(canvas.copy(), specs, dis_specs, yy, xx)
        bad = [i for i, inst in enumerate(instances) if inst.visible.sum() < min_visible * max(_area(inst), 1)]
        if not bad or attempt == 5:
            break
        for i in bad:
            cx, cy, s = _place(rng, h, w, scene)
            specs[i].cx, specs[i].cy = cx, cy
    return Scene(image=photometric(rng, img, scene), instances=instances, habitat=habitat)


def _area(inst: Instance) -> int:
    return int(inst.marking.sum() / max(inst.spec.marking_frac, 1e-6))


def _draw(
    img: Array, specs: list[ObjectSpec], dis_specs: list[tuple[bool, ObjectSpec]], yy: Array, xx: Array
) -> tuple[Array, list[Instance]]:
    owner = np.full(yy.shape, -1, dtype=np.int16)
    for front, d in dis_specs:
        if not front:
            paint_object(img, d, yy, xx)
    markings = []
    for i, spec in enumerate(specs):
        painted = paint_object(img, spec, yy, xx)
        owner[painted.body] = i
        markings.append(painted.marking)
    for front, d in dis_specs:
        if front:
            owner[paint_object(img, d, yy, xx).body] = -1
    instances = [
        Instance(category=s.category, spec=s, visible=owner == i, marking=m)
        for i, (s, m) in enumerate(zip(specs, markings))
    ]
    return img, instances
