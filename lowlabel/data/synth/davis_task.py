"""``davis/``: ShapesWorld video in the DAVIS-2017 layout, plus unlabeled ``.mp4`` clips.

::

    davis/JPEGImages/480p/<seq>/00000.jpg ...   frames (smaller than 480 px; the folder name is kept)
    davis/Annotations/480p/<seq>/00000.png ...  palette PNGs of object ids (0 = background, 1..N)
    davis/ImageSets/2017/{train,val}.txt
    davis/clips/<clip>.mp4                      unlabeled training videos (H.264)

Objects move with affine motion (translation, spin, scale drift), deform (animated shape harmonics),
occlude each other and unlabeled passers-by; the illumination changes and the camera pans.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from lowlabel.data.synth.config import DAVISConfig, ObjectStyle
from lowlabel.data.synth.io import save_jpeg, save_mp4, save_palette_png, write_lines
from lowlabel.data.synth.parallel import pmap
from lowlabel.data.synth.render import ObjectSpec, paint_background, paint_object, pixel_grid, sample_object, to_uint8

TASK_ID = 3


def _motion(rng: np.random.Generator, cfg: DAVISConfig) -> dict:
    ang = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.3, 1.0) * cfg.max_speed
    return {
        "v": (speed * np.cos(ang), speed * np.sin(ang)),
        "spin": np.deg2rad(rng.uniform(-1, 1) * cfg.max_spin),
        "grow": rng.uniform(-1, 1) * cfg.scale_drift,
        "phase": rng.uniform(0, 6.3, size=2),
        "omega": rng.uniform(0.15, 0.4),
    }


def render_sequence(
    rng: np.random.Generator, cfg: DAVISConfig, n_frames: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Frames (H, W, 3) uint8 and object-id maps (H, W) uint8 of one sequence."""
    h, w = cfg.size
    pan = rng.uniform(-1, 1, size=2) * cfg.pan_speed * np.array([1.0, 0.3])
    margin = int(np.ceil(np.abs(pan).max() * n_frames)) + 4
    bh, bw = h + 2 * margin, w + 2 * margin
    byy, bxx = pixel_grid(bh, bw)
    world = paint_background(rng, byy, bxx, None if rng.random() < 0.6 else int(rng.integers(20))).astype(np.float32)
    n_obj = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    style = replace(ObjectStyle(), marking_dropout=0.0)
    objs: list[tuple[ObjectSpec, dict]] = []
    for _ in range(n_obj):
        size = rng.uniform(0.15, 0.3) * min(h, w)
        spec = sample_object(
            rng, int(rng.integers(20)), style, rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h, size, 180.0
        )
        objs.append((spec, _motion(rng, cfg)))
    passer = None
    if rng.random() < 0.5:  # an unlabeled occluder crossing the view in front of everything
        spec = sample_object(rng, -1, style, -0.2 * w, rng.uniform(0.3, 0.7) * h, 0.2 * min(h, w), 180.0)
        passer = (
            spec,
            {
                "v": (1.4 * w / n_frames, rng.uniform(-0.5, 0.5)),
                "spin": 0.05,
                "grow": 0.0,
                "phase": np.zeros(2),
                "omega": 0.0,
            },
        )
    illum_phase, yy, xx = rng.uniform(0, 2 * np.pi), *pixel_grid(h, w)
    frames, labels = [], []
    for t in range(n_frames):
        ox, oy = margin + pan[0] * t, margin + pan[1] * t
        x0, y0 = int(round(ox)), int(round(oy))
        img = world[y0 : y0 + h, x0 : x0 + w].copy()
        ids = np.zeros((h, w), np.uint8)
        for k, (spec, mo) in enumerate(objs):
            cur = _at(spec, mo, t, cfg, w, h)
            ids[paint_object(img, cur, yy, xx).body] = k + 1
        if passer is not None:
            ids[paint_object(img, _at(passer[0], passer[1], t, cfg, 10 * w, h), yy, xx).body] = 0
        gain = 1.0 + cfg.illum_amp * np.sin(2 * np.pi * t / max(n_frames, 1) + illum_phase)
        light = 1.0 + 0.15 * cfg.illum_amp * (xx / w - 0.5) * np.cos(t * 0.2 + illum_phase)
        img = img * gain * light[..., None] + rng.normal(0, 0.015, size=img.shape).astype(np.float32)
        frames.append(to_uint8(img))
        labels.append(ids)
    return frames, labels


def _at(spec: ObjectSpec, mo: dict, t: int, cfg: DAVISConfig, w: float, h: float) -> ObjectSpec:
    """The object at frame ``t``: bouncing translation, spin, scale drift and animated deformation."""
    vx, vy = mo["v"]
    cx, cy = _bounce(spec.cx + vx * t, 0.1 * w, 0.9 * w), _bounce(spec.cy + vy * t, 0.1 * h, 0.9 * h)
    a = cfg.deform_amp
    p2, p3 = mo["phase"]
    deform = (a * np.sin(mo["omega"] * t + p2), p2, 0.6 * a * np.sin(1.3 * mo["omega"] * t + p3), p3)
    return replace(
        spec, cx=cx, cy=cy, angle=spec.angle + mo["spin"] * t, size=spec.size * (1.0 + mo["grow"]) ** t, deform=deform
    )


def _bounce(x: float, lo: float, hi: float) -> float:
    span = hi - lo
    if span <= 0:
        return lo
    u = (x - lo) % (2 * span)
    return lo + (u if u <= span else 2 * span - u)


def _seq_job(args: tuple) -> str:
    cfg, out, name, index, seed = args
    rng = np.random.default_rng([seed, TASK_ID, 0, index])
    frames, labels = render_sequence(rng, cfg, cfg.num_frames)
    for t, (f, lab) in enumerate(zip(frames, labels)):
        save_jpeg(out / "JPEGImages" / "480p" / name / f"{t:05d}.jpg", f)
        save_palette_png(out / "Annotations" / "480p" / name / f"{t:05d}.png", lab)
    return name


def _clip_job(args: tuple) -> str:
    cfg, out, name, index, seed = args
    rng = np.random.default_rng([seed, TASK_ID, 1, index])
    frames, _ = render_sequence(rng, cfg, cfg.clip_frames)
    save_mp4(out / "clips" / f"{name}.mp4", frames, cfg.fps)
    return name


def generate_davis(cfg: DAVISConfig, out: Path, seed: int, workers: int) -> None:
    """Write ``out`` (the ``davis/`` folder)."""
    n_tr, n_val = cfg.num_train_seqs, cfg.num_val_seqs
    names = [f"shapes-{i:03d}" for i in range(n_tr + n_val)]
    pmap(_seq_job, [(cfg, out, n, i, seed) for i, n in enumerate(names)], workers)
    write_lines(out / "ImageSets" / "2017" / "train.txt", names[:n_tr])
    write_lines(out / "ImageSets" / "2017" / "val.txt", names[n_tr:])
    pmap(_clip_job, [(cfg, out, f"clip-{i:04d}", i, seed) for i in range(cfg.num_clips)], workers)
