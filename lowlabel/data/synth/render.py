"""Rasterising ShapesWorld objects and scenes with numpy (deterministic, no global random state).

An object is an implicit shape in its own rotated, scaled frame ``(lx, ly)`` (``lx`` along the major axis).
Its marking is the part of the body with the largest ``lx`` (the "head"), cut so that it covers
``marking_frac`` of the body area. All textures are functions of pixel coordinates, so rendering only
depends on the parameters drawn from the per-item ``numpy.random.Generator``.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, field

import numpy as np

from lowlabel.data.synth.classes import MARK_COLORS, SHAPES, CategoryLook, category_look
from lowlabel.data.synth.config import ObjectStyle, SceneStyle

Array = np.ndarray


@dataclass
class ObjectSpec:
    """One object instance (``category=-1`` for an unmarked distractor)."""

    category: int
    shape: str
    cx: float
    cy: float
    size: float  # half extent along the major axis, px
    aspect: float  # >= 1: major / minor half extent
    angle: float  # radians
    rgb: tuple[float, float, float]
    texture: dict = field(default_factory=dict)
    mark_strength: float = 0.0  # 0 = no visible marking
    marking_frac: float = 0.2
    deform: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # amp2, phase2, amp3, phase3


def hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return (r, g, b)


def pixel_grid(h: int, w: int) -> tuple[Array, Array]:
    """Pixel-centre coordinates ``(yy, xx)``, each float32 (H, W)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy + 0.5, xx + 0.5


def local_frame(spec: ObjectSpec, yy: Array, xx: Array) -> tuple[Array, Array]:
    """Object-frame coordinates: ``lx`` in [-1, 1] along the major axis, ``ly`` across it (both (H, W))."""
    dx, dy = xx - spec.cx, yy - spec.cy
    c, s = np.cos(spec.angle), np.sin(spec.angle)
    lx = (dx * c + dy * s) / (spec.size)
    ly = (-dx * s + dy * c) / (spec.size / spec.aspect)
    return lx, ly


def shape_field(shape: str, lx: Array, ly: Array, deform: tuple[float, float, float, float]) -> Array:
    """Implicit shape function: a pixel is inside when the returned value is <= 1."""
    rho = np.sqrt(lx * lx + ly * ly)
    theta = np.arctan2(ly, lx)
    if shape == "ellipse":
        f = rho
    elif shape == "rectangle":
        f = (lx**4 + ly**4) ** 0.25
    elif shape == "triangle":  # vertices (1, 0), (-0.7, +-0.85)
        f = np.maximum(np.maximum((0.85 * lx + 1.7 * ly) / 0.85, (0.85 * lx - 1.7 * ly) / 0.85), -lx / 0.7)
    elif shape == "diamond":
        f = np.abs(lx) + np.abs(ly)
    elif shape == "star":
        f = rho / (0.72 + 0.28 * np.cos(5 * theta))
    elif shape == "blob":
        f = rho / (1.0 + 0.18 * np.cos(2 * theta + 0.7) + 0.12 * np.cos(3 * theta + 2.1))
    # outlines used only by pretrain/ (the shapes above are the other folders', unchanged)
    elif shape == "hexagon":  # regular, flat sides across lx
        f = np.maximum.reduce([np.abs(lx * np.cos(a) + ly * np.sin(a)) for a in (0.0, np.pi / 3, 2 * np.pi / 3)])
        f = f / np.cos(np.pi / 6)
    elif shape == "cross":  # two bars of half-width 0.35
        f = np.minimum(np.maximum(np.abs(lx), np.abs(ly) / 0.35), np.maximum(np.abs(lx) / 0.35, np.abs(ly)))
    elif shape == "crescent":  # the unit disc minus a disc of radius 0.75 centred at (0.45, 0)
        bite = np.sqrt((lx - 0.45) ** 2 + ly * ly)
        f = np.maximum(rho, 0.75 / np.maximum(bite, 1e-6))
    elif shape == "ring":  # annulus 0.5 <= rho <= 1
        f = np.maximum(rho, 0.5 / np.maximum(rho, 1e-6))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    a2, p2, a3, p3 = deform
    if a2 or a3:
        f = f / (1.0 + a2 * np.cos(2 * theta + p2) + a3 * np.cos(3 * theta + p3))
    return f


def marking_pattern(look: CategoryLook, lx: Array, ly: Array, q: float, size_px: float) -> Array:
    """Binary pattern (H, W) bool of the category's marking, in object coordinates."""
    span = max(1.0 - q, 0.15)
    freq = look.pattern_freq / span  # cycles per unit of lx
    freq = min(freq, size_px / 3.0)  # keep the period >= 3 px
    u, v = (lx - q) * freq, ly * freq * 0.8
    if look.pattern == "stripes":
        return np.sin(2 * np.pi * u) > 0
    if look.pattern == "checker":
        return (np.sin(2 * np.pi * u) * np.sin(2 * np.pi * v)) > 0
    if look.pattern == "dots":
        fu, fv = u - np.round(u), v - np.round(v)
        return (fu * fu + fv * fv) < 0.09
    if look.pattern == "rings":
        return np.sin(2 * np.pi * np.sqrt(u * u + v * v) * 0.8) > 0
    tri = np.abs((u * 2.0) % 2.0 - 1.0)  # zigzag
    return np.sin(2 * np.pi * (v + 0.6 * tri)) > 0


def texture_field(tex: dict, lx: Array, ly: Array) -> Array:
    """Shared (class-agnostic) texture value in [-1, 1], (H, W)."""
    kind = tex.get("kind", "flat")
    if kind == "flat":
        return np.zeros_like(lx)
    if kind == "stripes":
        a, f = tex["angle"], tex["freq"]
        return np.sin(2 * np.pi * f * (lx * np.cos(a) + ly * np.sin(a)) + tex["phase"])
    if kind == "speckle":
        f = tex["freq"]
        return np.sin(f * 7.1 * lx + tex["phase"]) * np.sin(f * 5.3 * ly + 1.3 * tex["phase"])
    # kinds used only by pretrain/'s category textures
    if kind == "checker":
        a, f = tex["angle"], tex["freq"]
        u = 2 * np.pi * f * (lx * np.cos(a) + ly * np.sin(a)) + tex["phase"]
        v = 2 * np.pi * f * (-lx * np.sin(a) + ly * np.cos(a))
        return np.sign(np.sin(u) * np.sin(v))
    if kind == "dots":
        a, f = tex["angle"], tex["freq"]
        u = f * (lx * np.cos(a) + ly * np.sin(a)) + tex["phase"]
        v = f * (-lx * np.sin(a) + ly * np.cos(a))
        fu, fv = u - np.round(u), v - np.round(v)
        return np.where(fu * fu + fv * fv < 0.08, 1.0, -0.35)
    # blotch: a sum of three random low-frequency waves
    out = np.zeros_like(lx)
    for a, f, p in tex["waves"]:
        out += np.sin(2 * np.pi * f * (lx * np.cos(a) + ly * np.sin(a)) + p)
    return out / 3.0


def random_texture(rng: np.random.Generator) -> dict:
    """A texture from the pool shared by all categories (bodies, distractors, backgrounds)."""
    kind = ["flat", "stripes", "speckle", "blotch"][int(rng.integers(4))]
    tex: dict = {"kind": kind, "amp": float(rng.uniform(0.1, 0.3))}
    if kind in ("stripes", "speckle"):
        tex.update(
            angle=float(rng.uniform(0, np.pi)), freq=float(rng.uniform(1.0, 3.0)), phase=float(rng.uniform(0, 6.3))
        )
    elif kind == "blotch":
        tex["waves"] = [
            (float(rng.uniform(0, np.pi)), float(rng.uniform(0.3, 1.2)), float(rng.uniform(0, 6.3))) for _ in range(3)
        ]
    return tex


def sample_object(
    rng: np.random.Generator, category: int, style: ObjectStyle, cx: float, cy: float, size: float, max_rot: float
) -> ObjectSpec:
    """Draw an object of ``category`` (or a distractor for -1) with partial-activation evidence."""
    if category >= 0:
        look = category_look(category)
        shape = look.shape if rng.random() < style.shape_bias else SHAPES[int(rng.integers(len(SHAPES)))]
        hue = look.hue + rng.normal(0, style.hue_jitter) if rng.random() < style.hue_bias else rng.random()
        strength = 0.0 if rng.random() < style.marking_dropout else float(rng.uniform(*style.marking_strength))
    else:
        shape, hue, strength = SHAPES[int(rng.integers(len(SHAPES)))], rng.random(), 0.0
    rgb = hsv(float(hue), rng.uniform(0.35, 0.8), rng.uniform(0.45, 0.9))
    return ObjectSpec(
        category=category,
        shape=shape,
        cx=cx,
        cy=cy,
        size=size,
        aspect=float(rng.uniform(1.0, 1.8)),
        angle=float(np.deg2rad(rng.uniform(-max_rot, max_rot))),
        rgb=rgb,
        texture=random_texture(rng),
        mark_strength=strength,
        marking_frac=style.marking_frac,
    )


@dataclass
class Painted:
    """Masks of one drawn object: amodal body and marking (H, W) bool."""

    body: Array
    marking: Array


def object_window(spec: ObjectSpec, h: int, w: int) -> tuple[slice, slice]:
    """Pixel window that contains the whole object (shapes and deformations stay within 1.5 half extents)."""
    r = spec.size * (1.5 + abs(spec.deform[0]) + abs(spec.deform[2])) + 2
    y0, y1 = max(int(spec.cy - r), 0), min(int(spec.cy + r) + 1, h)
    x0, x1 = max(int(spec.cx - r), 0), min(int(spec.cx + r) + 1, w)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def paint_object(img: Array, spec: ObjectSpec, yy: Array, xx: Array) -> Painted:
    """Draw ``spec`` into ``img`` (H, W, 3 float, in place) and return its amodal masks (full size)."""
    h, w = yy.shape
    body_full, marking_full = np.zeros((h, w), bool), np.zeros((h, w), bool)
    win = object_window(spec, h, w)
    lx, ly = local_frame(spec, yy[win], xx[win])
    body = shape_field(spec.shape, lx, ly, spec.deform) <= 1.0
    if not body.any():
        return Painted(body=body_full, marking=marking_full)
    tex = texture_field(spec.texture, lx, ly) * spec.texture.get("amp", 0.0)
    color = np.asarray(spec.rgb, dtype=np.float32)[None, None, :] * (1.0 + tex[..., None])
    q = float(
        np.partition(lx[body], int((1.0 - spec.marking_frac) * (body.sum() - 1)))[
            int((1.0 - spec.marking_frac) * (body.sum() - 1))
        ]
    )  # the (1 - frac) quantile of lx over the body
    marking = body & (lx >= q)
    if spec.category >= 0 and spec.mark_strength > 0 and marking.any():
        look = category_look(spec.category)
        on = marking_pattern(look, lx, ly, q, spec.size)
        c1, c2 = (np.asarray(MARK_COLORS[i], dtype=np.float32) for i in look.mark_colors)
        mark_rgb = np.where(on[..., None], c1, c2)
        s = spec.mark_strength
        color = np.where(marking[..., None], color * (1 - s) + mark_rgb * s, color)
    img[win][body] = color[body]
    body_full[win], marking_full[win] = body, marking
    return Painted(body=body_full, marking=marking_full)


def paint_background(rng: np.random.Generator, yy: Array, xx: Array, habitat: int | None) -> Array:
    """Background (H, W, 3) float: a shared random texture, or the habitat of category ``habitat``."""
    h, w = yy.shape
    ny, nx = yy / h, xx / w
    if habitat is not None:
        look = category_look(habitat)
        c1 = np.asarray(hsv(look.habitat_hue, 0.55, 0.75), dtype=np.float32)
        c2 = np.asarray(hsv(look.habitat_hue + 0.05, 0.7, 0.45), dtype=np.float32)
        a = look.habitat_freq * 0.7
        t = 0.5 + 0.5 * np.sin(2 * np.pi * look.habitat_freq * (nx * np.cos(a) + ny * np.sin(a)) + rng.uniform(0, 6.3))
    else:
        c1 = np.asarray(hsv(rng.random(), rng.uniform(0.05, 0.45), rng.uniform(0.35, 0.9)), dtype=np.float32)
        c2 = np.asarray(hsv(rng.random(), rng.uniform(0.05, 0.45), rng.uniform(0.35, 0.9)), dtype=np.float32)
        t = 0.5 + 0.5 * texture_field(random_texture(rng), nx * 2 - 1, ny * 2 - 1)
    return c1 + (c2 - c1) * t[..., None]


def photometric(rng: np.random.Generator, img: Array, scene: SceneStyle) -> Array:
    """Colour jitter + Gaussian noise, then quantise to uint8 (H, W, 3)."""
    j = scene.color_jitter
    bright, contrast = rng.uniform(1 - j, 1 + j), rng.uniform(1 - j, 1 + j)
    mean = img.mean()
    out = (img - mean) * contrast + mean * bright
    if scene.noise_std > 0:
        out = out + rng.normal(0, scene.noise_std, size=out.shape).astype(np.float32)
    return to_uint8(out)


def to_uint8(img: Array) -> Array:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def mask_bbox(mask: Array) -> tuple[int, int, int, int] | None:
    """Inclusive pixel box ``(x0, y0, x1, y1)`` of a bool mask, or None if empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
