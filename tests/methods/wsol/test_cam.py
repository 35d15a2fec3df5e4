"""CAM method: one step + predict on 2 images, evaluation files, bad input, engine CLI, real configs."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lowlabel.data.transforms import collate_dicts
from lowlabel.engine.config import load_config_file
from lowlabel.errors import DataError
from lowlabel.methods.wsol import cam
from lowlabel.samples import load_sample, read_per_image
from tests.methods.wsol.wsol_fake import write_wsol

ROOT = Path(__file__).resolve().parents[3]


def tiny(cfg: cam.CAMConfig, data_root: Path, meta_root: Path, **data: object) -> cam.CAMConfig:
    """A real config shrunk for a CPU test: tiny backbone, 32 px, 1 step, batch 2, local data."""
    cfg.data = dataclasses.replace(cfg.data, root="", data_root=str(data_root), metadata_root=str(meta_root),
                                   resize_size=40, crop_size=32, **data)
    cfg.model = dataclasses.replace(cfg.model, backbone="resnet_small", width=4, pretrained="")
    cfg.trainer = dataclasses.replace(cfg.trainer, max_steps=1, batch_size=2, accelerator="cpu", eval_every=0,
                                      num_workers=0)
    cfg.eval = dataclasses.replace(cfg.eval, cam_curve_interval=0.05)
    return cfg


@pytest.fixture
def cub(tmp_path: Path) -> tuple[Path, Path]:
    return write_wsol(tmp_path, "CUB", mask_splits=("val",))


def test_training_step_and_predict_on_two_images(cub: tuple[Path, Path], tmp_path: Path) -> None:
    torch.manual_seed(0)
    method = cam.build(tiny(cam.CAMConfig(), *cub))
    nets = method.networks()
    batch = collate_dicts([method.train_dataset()[i] for i in (0, 3)])
    out = method.training_step(nets, batch, 0)
    loss = out.losses["model"]
    assert loss.ndim == 0 and math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    assert all(p.grad is not None for p in nets["model"].parameters())
    images = tmp_path / "in"
    images.mkdir()
    for src in sorted((cub[0]).rglob("*test_0000.jpg"))[:2]:
        (images / src.name).write_bytes(src.read_bytes())
    with torch.no_grad():
        method.predict({k: v.eval() for k, v in nets.items()}, images, tmp_path / "out")
    result = json.loads((tmp_path / "out" / "boxes.json").read_text())
    assert len(result) == 2
    for entry in result:
        assert (tmp_path / "out" / entry["overlay"]).is_file()
        assert 0 <= entry["class"] < 3 and entry["boxes"] and all(len(b) == 4 for b in entry["boxes"])


def test_evaluate_writes_box_and_mask_metrics_per_image_and_samples(cub: tuple[Path, Path], tmp_path: Path) -> None:
    method = cam.build(tiny(cam.CAMConfig(), *cub, mask_root=str(cub[0])))
    nets = {k: v.eval() for k, v in method.networks().items()}
    with torch.no_grad():
        result = method.evaluate(nets, "val", tmp_path / "ev")
    for key in ("MaxBoxAccV2", "MaxBoxAccV2@30", "MaxBoxAccV2@50", "MaxBoxAccV2@70", "GT-known Loc", "Top-1 Loc",
                "Top-1 Cls", "PxAP"):
        assert 0 <= result.metrics[key] <= 100
    assert result.monitor == "MaxBoxAccV2"
    scores = read_per_image(tmp_path / "ev" / "per_image.csv")
    assert len(scores) == 6 and all(0 <= s <= 1 for s in scores.values())
    samples = sorted((tmp_path / "ev" / "samples").glob("*.npz"))
    assert len(samples) == 6
    s = load_sample(samples[0])
    assert s["kind"] == "localization" and s["heatmap"].shape == s["image"].shape[:2] == (48, 48)
    assert s["gt_boxes"].shape == (1, 4) and "gt_mask" in s


def test_label_out_of_range_names_file_and_line(tmp_path: Path) -> None:
    data_root, meta = write_wsol(tmp_path, "CUB")
    labels = meta / "train" / "class_labels.txt"
    lines = labels.read_text().splitlines()
    lines[2] = lines[2].rsplit(",", 1)[0] + ",7"
    labels.write_text("\n".join(lines) + "\n")
    method = cam.build(tiny(cam.CAMConfig(), data_root, meta))
    with pytest.raises(DataError, match=r"class_labels.txt:3: class label 7 .* outside \[0, 3\)"):
        method.train_dataset()


def test_image_id_missing_from_metadata(tmp_path: Path) -> None:
    data_root, meta = write_wsol(tmp_path, "CUB")
    ids = meta / "train" / "image_ids.txt"
    ids.write_text("\n".join(ids.read_text().splitlines()[1:]) + "\n")
    with pytest.raises(DataError, match="not in image_ids.txt"):
        cam.build(tiny(cam.CAMConfig(), data_root, meta))


REAL = [("cub", "CUB", "MaxBoxAccV2"), ("imagenet", "ILSVRC", "MaxBoxAccV2"), ("openimages", "OpenImages", "PxAP")]


@pytest.mark.parametrize(("name", "layout", "key"), REAL)
def test_real_config_runs_on_fake_layout(name: str, layout: str, key: str, tmp_path: Path) -> None:
    from lowlabel.engine import fit

    cfg = load_config_file(cam.CONFIG, ROOT / "configs" / "cam" / f"{name}.yaml")
    assert cfg.data.dataset == layout and cfg.trainer.batch_size == 32
    data_root, meta = write_wsol(tmp_path, layout)
    mask_root = {"mask_root": str(data_root)} if layout == "OpenImages" else {}
    result = fit(cam.build(tiny(cfg, data_root, meta, **mask_root)), run_dir=tmp_path / "run", progress=False)
    assert np.isfinite(result.metrics[key])
