"""Partial-activation diagnosis of a trained CAM run on ShapesWorld ``wsol/`` (issue 4 calibration).

Loads a run folder written by ``lowlabel train cam`` or ``lowlabel train da_wsol`` (its ``config.yaml`` and, by
default, its last checkpoint),
computes the min-max normalised CAM of the ground-truth class of every image of a split at the original resolution
(as the evaluation does), and reports the CAM mass on background / object / marking and

``marking_ratio = (CAM mass on the marking / CAM mass on the object) / (marking area / object area)``

(means over images), with the object masks of ``wsol/masks/`` and the marking masks of ``wsol/diagnostics/``.

``--task voc`` does the same for a multi-label CAM run on ``voc/`` (see :func:`_voc_maps`).

Example::

    LOWLABEL_CACHE=/tmp/calib_cache python benchmarks/cam_marking_ratio.py --run /tmp/calib_runs/v12 --split val
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image


def mass_shares(cam: np.ndarray, obj: np.ndarray, mark: np.ndarray) -> tuple[float, float, float]:
    """(object mass share, marking mass share, marking area share of the object) of a [0, 1] CAM."""
    tot = float(cam.sum()) + 1e-12
    return float(cam[obj].sum() / tot), float(cam[mark].sum() / tot), float(mark.sum() / max(obj.sum(), 1))


def _load(run: Path, ckpt: str, data_root: str | None) -> tuple[str, Any]:
    """The run's method name and its loaded method + nets (eval mode), optionally on another data root."""
    from dataclasses import replace

    from lowlabel.engine.config import load_config_file
    from lowlabel.engine.run import load_method_from_run
    from lowlabel.methods import method_module

    name = json.loads((run / "env.json").read_text())["method"]  # cam, da_wsol or mlcam
    config = load_config_file(method_module(name).CONFIG, run / "config.yaml")
    if data_root:
        config = replace(config, data=replace(config.data, root=data_root))
    return name, load_method_from_run(run / "checkpoints" / ckpt, method_name=name, config=config)


def _wsol_maps(method: Any, model: Any, split: str, limit: int | None) -> Iterator[tuple[np.ndarray, ...]]:
    """(CAM of the GT class at the original resolution, object mask, marking mask) per ``wsol/`` image."""
    from lowlabel.models.cam_heads import scoremaps_from_cams, select_class_cams

    ds = method.data.dataset(split, train=False)
    wsol_root = Path(method.data.image_root).parent.parent  # <wsol>/images/<DS>
    for i, image_id in enumerate(ds.image_ids[:limit] if limit else ds.image_ids):
        item = ds[i]
        _, cams = model.cams(item["image"][None].float())
        stem = Path(image_id).stem
        obj = np.asarray(Image.open(wsol_root / "masks" / split / f"{stem}_mask.png")) > 0
        mark = np.asarray(Image.open(wsol_root / "diagnostics" / split / f"{stem}_marking.png")) > 0
        cam = scoremaps_from_cams(select_class_cams(cams, torch.tensor([item["label"]])), obj.shape)[0]
        yield cam, obj, mark


def _voc_maps(method: Any, model: Any, split: str, limit: int | None) -> Iterator[tuple[np.ndarray, ...]]:
    """(pixel-wise max of the present classes' CAMs, object mask, marking mask) per ``voc/`` image.

    The CAM is the score the seeds threshold; object = pixels of any class in the GT mask (255 boundary band
    excluded), marking = the union of the visible markings of ``voc/diagnostics/<id>_marking.png``.
    """
    from lowlabel.methods.wsss import common

    ds = method.data.split(split)
    for i in range(min(limit, len(ds)) if limit else len(ds)):
        s = ds[i]
        cams, _ = method.cam_maps(model, common.normalize_image(s["image"]), s["labels"].float())
        cam = cams.max(0).values.numpy()
        gt = np.asarray(s["mask"]).reshape(cam.shape)
        obj = (gt > 0) & (gt != 255)
        mark = np.asarray(Image.open(method.data.root / "diagnostics" / f"{s['image_id']}_marking.png")) > 0
        yield cam, obj, mark & obj


def diagnose(
    run: Path, split: str, limit: int | None, ckpt: str = "last.ckpt", data_root: str | None = None,
    task: str = "wsol",
) -> dict:
    """Mean CAM mass shares and marking ratio of the run's model on ``split`` (of ``data_root`` if given).

    ``task="wsol"``: a ``cam`` / ``da_wsol`` run on ``wsol/``; ``task="voc"``: an ``mlcam`` run on ``voc/``.
    """
    name, loaded = _load(run, ckpt, data_root)
    maps = {"wsol": _wsol_maps, "voc": _voc_maps}[task]
    obj_m, mark_m, area, ratios = [], [], [], []
    with torch.no_grad():
        for cam, obj, mark in maps(loaded.method, loaded.nets["model"], split, limit):
            o, m, a = mass_shares(cam, obj, mark)
            obj_m.append(o)
            if a > 0:  # images whose marking is visible
                mark_m.append(m)
                area.append(a)
                ratios.append((m / max(o, 1e-12)) / a)
    return {
        "run": str(run),
        "method": name,
        "checkpoint": ckpt,
        "step": loaded.step,
        "split": split,
        "images": len(obj_m),
        "cam_mass_background": 1.0 - float(np.mean(obj_m)),
        "cam_mass_object": float(np.mean(obj_m)),
        "cam_mass_marking": float(np.mean(mark_m)),
        "marking_area_share": float(np.mean(area)),
        "marking_ratio_of_means": (float(np.mean(mark_m)) / float(np.mean(obj_m))) / float(np.mean(area)),
        "marking_ratio_median": float(np.median(ratios)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", type=Path, required=True, help="run folder of `lowlabel train cam` or `da_wsol`")
    p.add_argument("--task", choices=["wsol", "voc"], default="wsol", help="voc: a `lowlabel train mlcam` run")
    p.add_argument("--split", default="val")
    p.add_argument("--ckpt", default="last.ckpt", help="checkpoint file in <run>/checkpoints (the protocol: last)")
    p.add_argument("--data-root", default=None, help="read the images here instead of the run's data.root")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(diagnose(args.run, args.split, args.limit, args.ckpt, args.data_root, args.task), indent=1))


if __name__ == "__main__":
    main()
