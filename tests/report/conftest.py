"""Fake run folders in the engine's layout, for report tests (no model, no training)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from lowlabel.samples import choose_sample_ids, save_sample, write_per_image

FakeRun = Callable[..., Path]


def _localization_sample(rng: np.random.Generator, size: int) -> dict[str, Any]:
    image = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:size, 0:size]
    heat = np.exp(-((yy - size / 2) ** 2 + (xx - size / 3) ** 2) / (2 * (size / 6) ** 2)).astype(np.float32)
    gt = np.array([[8, 10, 40, 44]], dtype=np.float64)
    pred = np.array([[6, 12, 36, 40]], dtype=np.float64)
    mask = (heat > 0.5).astype(np.uint8)
    return {"image": image, "heatmap": heat, "gt_boxes": gt, "pred_boxes": pred, "gt_mask": mask}


def _segmentation_sample(rng: np.random.Generator, size: int, class_names: list[str]) -> dict[str, Any]:
    image = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    gt = np.zeros((size, size), dtype=np.uint8)
    gt[10:30, 10:30] = 1
    gt[35:50, 5:25] = 2
    gt[9, 9:31] = 255
    seed = np.zeros_like(gt)
    seed[12:28, 12:26] = 1
    return {"image": image, "gt": gt, "seed": seed, "pseudo": gt.copy(), "class_names": np.array(class_names)}


@pytest.fixture
def fake_run(tmp_path: Path) -> FakeRun:
    """A factory writing a complete fake run folder and returning its path."""

    def make(
        name: str, *, method: str, metrics: dict[str, float], seed: int = 0, kind: str = "localization",
        split: str = "val", num_images: int = 16, per_class: dict[str, dict[str, float]] | None = None,
        class_names: list[str] | None = None, caption: str = "", config_extra: dict[str, Any] | None = None,
        root: Path | None = None,
    ) -> Path:
        run = (root or tmp_path / "runs") / name
        (run / "logs").mkdir(parents=True)
        config = {"method": method, "data": {"root": "synth:quick"}, "trainer": {"max_steps": 20, "seed": seed},
                  "optim": {"lr": 0.01}, **(config_extra or {})}
        (run / "config.yaml").write_text(yaml.safe_dump(config))
        (run / "env.json").write_text(json.dumps({"python": "3.11", "torch": "2.x", "argv": ["lowlabel", "train"]}))
        payload: dict[str, Any] = {**metrics, "step": 20, "split": split}
        if per_class:
            payload["per_class"] = per_class
        (run / "metrics.json").write_text(json.dumps(payload))
        rows = ["step,key,value"]
        for step in range(0, 21, 5):
            rows.append(f"{step},train/loss,{2.0 / (step + 1) + seed * 0.01}")
            rows.append(f"{step},train/acc,{step / 20}")
        rows += [f"{s},val/{k},{v * s / 20}" for s in (10, 20) for k, v in metrics.items()]
        (run / "logs" / "metrics.csv").write_text("\n".join(rows) + "\n")
        eval_dir = run / "eval" / split
        rng = np.random.default_rng(seed)
        ids = [f"img_{i:03d}" for i in range(num_images)]
        scores = {i: float(rng.uniform()) for i in ids}
        write_per_image(eval_dir, scores)
        names = class_names or ["background", "circle", "square"]
        for image_id in choose_sample_ids(ids, scores):
            arrays = (_localization_sample(rng, 64) if kind == "localization"
                      else _segmentation_sample(rng, 64, names))
            extra = {"caption": caption} if caption else {}
            save_sample(eval_dir, image_id, kind, **arrays, **extra)
        return run

    return make
