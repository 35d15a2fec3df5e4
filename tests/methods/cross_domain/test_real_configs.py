"""The real-dataset configs of detector, cut and lgcl (cityscapes-foggy, sim10k-cityscapes, kitti-cityscapes) on tiny
fakes written in the layouts the datasets ship in (detection_fake.py): what each config reads, and the values LGCL
fixes. tests/methods/test_contract.py trains each of them one step on the same fakes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from lowlabel.engine.config import load_config_file
from lowlabel.methods.cross_domain import cut, detector, lgcl
from lowlabel.methods.cross_domain.translation import target_test_split
from tests.methods.cross_domain.detection_fake import cityscapes_name, rebase, write_real_layouts

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
REAL = ("cityscapes-foggy", "sim10k-cityscapes", "kitti-cityscapes")
CITYSCAPES_8 = ["person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_real_layouts(tmp_path_factory.mktemp("real") / "data")


def load(module: Any, name: str, data: Path) -> Any:
    """The config, its ``data/`` paths pointed at the fakes."""
    cfg = load_config_file(module.CONFIG, CONFIGS / module.__name__.rsplit(".", 1)[-1] / f"{name}.yaml")
    cfg.data = rebase(cfg.data, data)
    return cfg


def build_detector(name: str, data: Path) -> Any:
    """The detector of a real config without its ImageNet download (the network is not under test here)."""
    cfg = load(detector, name, data)
    cfg.model = dataclasses.replace(cfg.model, pretrained="")
    return detector.build(cfg)


# ---------------------------------------------------------------- what the papers fix

DETECTOR = {  # LGCL (reference/methods.md 1a item 10): detectron2 R-50-C4, SGD 1e-3, batch 4, wd 5e-4, 50k/70k/100k
    "model.backbone": "resnet50", "model.pretrained": "torchvision", "model.frozen_bn": True, "model.freeze_at": 2,
    "model.min_size": 600, "optim.name": "sgd", "optim.lr": 0.001, "optim.weight_decay": 5e-4,
    "optim.milestones": (50000, 70000), "trainer.max_steps": 100000, "trainer.batch_size": 4,
}  # fmt: skip
TRANSLATOR = {  # LGCL (1a items 1, 10): shorter side 600, full-resolution inference, Adam 1e-5 (0.5, 0.99); CUT nets
    "data.load_size": 600, "data.eval_size": 0, "optim_g.lr": 1e-5, "optim_g.betas": (0.5, 0.99), "optim_d.lr": 1e-5,
    "optim_d.betas": (0.5, 0.99), "model.width": 64, "model.n_blocks": 9, "model.disc_width": 64,
    "nce.num_patches": 256, "nce.tau": 0.07, "trainer.batch_size": 1,
}  # fmt: skip
LOCAL_GLOBAL = {"lg.layer_weights": (1.0, 0.7, 0.4, 0.1), "lg.tau": 0.2, "lg.momentum": 0.999,
                "lg.queue_size": 65536}
# 400 epochs at batch 1; an epoch of the unpaired set is max(|target train|, |source train|) images
EPOCH = {"cityscapes-foggy": max(2975, 2975), "sim10k-cityscapes": max(2975, 10000),
         "kitti-cityscapes": max(2975, 7481)}


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return tuple(cfg) if isinstance(cfg, list | tuple) else cfg


@pytest.mark.parametrize("name", REAL)
def test_the_values_lgcl_fixes(name: str, data: Path) -> None:
    det = load(detector, name, data)
    assert {k: _get(det, k) for k in DETECTOR} == DETECTOR
    for module, extra in ((cut, {}), (lgcl, LOCAL_GLOBAL)):
        cfg = load(module, name, data)
        expected = {**TRANSLATOR, **extra, "trainer.max_steps": 400 * EPOCH[name], "detector": f"runs/detector/{name}"}
        assert {k: _get(cfg, k) for k in expected} == expected, module.__name__
    # the translators' detector run is the one configs/detector/<name>.yaml trains (its documented --run-dir)
    assert f"--run-dir runs/detector/{name}" in (CONFIGS / "detector" / f"{name}.yaml").read_text()


# ---------------------------------------------------------------- what each config reads


def test_cityscapes_foggy_reads_beta_002_under_the_clean_names(data: Path) -> None:
    method = build_detector("cityscapes-foggy", data)
    assert method.class_names == CITYSCAPES_8
    train = method.train_dataset()
    foggy = method.split(method.config.data, "foggy_val", classes=CITYSCAPES_8)
    clean = method.split(method.config.data, "val", classes=CITYSCAPES_8)
    assert foggy.image_ids() == clean.image_ids() == [f"frankfurt/{cityscapes_name('frankfurt', i)}_leftImg8bit"
                                                      for i in range(2)]
    item, twin = foggy[1], clean[1]
    assert item["image"].shape == twin["image"].shape  # the beta-0.02 file (the other densities are smaller)
    assert float(item["image"].float().std()) < float(twin["image"].float().std())  # fog: less contrast
    assert item["boxes"].tolist() == twin["boxes"].tolist()
    assert item["labels"].tolist() == [CITYSCAPES_8.index(c) for c in ("car", "person", "bicycle")]
    assert len(train) == 2 and train[0]["labels"].tolist() == [2, 0, 7]

    for module in (cut, lgcl):
        translator = module.build(load(module, "cityscapes-foggy", data))
        pairs = translator.train_dataset()
        assert [p.name for p in pairs.a] == [f"{cityscapes_name('aachen', i)}_leftImg8bit_foggy_beta_0.02.png"
                                             for i in range(2)]  # one density of the three on disk
        assert [p.name for p in pairs.b] == [f"{cityscapes_name('aachen', i)}_leftImg8bit.png" for i in range(2)]
        folders = translator.folders()
        test = target_test_split(translator.config.data, folders, CITYSCAPES_8)
        for i in range(len(test)):  # each foggy test image has its clear twin under its annotated name
            assert (Path(folders["target_test_clean"]) / test[i]["file_name"]).is_file()


def test_sim10k_keeps_car_boxes_only(data: Path) -> None:
    method = build_detector("sim10k-cityscapes", data)
    assert method.class_names == ["car"]
    train = method.train_dataset()
    assert len(train) == 3
    for i in range(3):  # one car per frame; Sim10k's motorbike and person boxes dropped
        assert train[i]["labels"].tolist() == [0]
    target = method.split(method.config.data, "cityscapes_val", classes=["car"])
    assert [target[i]["labels"].tolist() for i in range(2)] == [[0], [0]]  # Cityscapes' car, not its person/bicycle
    translator = lgcl.build(load(lgcl, "sim10k-cityscapes", data))
    pairs = translator.train_dataset()
    assert {p.suffix for p in pairs.a} == {".png"} and {p.suffix for p in pairs.b} == {".jpg"}  # Cityscapes -> Sim10k


def test_kitti_car_is_cityscapes_car(data: Path) -> None:
    method = build_detector("kitti-cityscapes", data)
    train = method.split(method.config.data, "train", classes=["car"])
    item = train[0]
    assert item["labels"].tolist() == [0]  # Car -> car; Pedestrian and DontCare dropped
    assert item["boxes"].tolist() == [[6, 8, 30, 24]]  # KITTI's inclusive right/bottom + 1
    translator = cut.build(load(cut, "kitti-cityscapes", data))
    assert len(translator.train_dataset().b) == 3  # KITTI's image_2 frames are the style to reach
