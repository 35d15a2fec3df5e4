"""Unpaired domain folders: CUT layout, COCO boxes, clean twins, fog statistics, VOC-XML detection folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lowlabel.data.synth.config import get_preset
from lowlabel.data.synth.voc_task import voc_xml
from lowlabel.data.unpaired import DetectionFolder, UnpairedImages, list_images, shapesworld_domains
from lowlabel.errors import DataError


def test_layout_counts_and_boxes(quick_root: Path) -> None:
    cfg = get_preset("quick").domains
    root = quick_root / "domains"
    for split, n in (
        ("trainA", cfg.num_train_a),
        ("trainB", cfg.num_train_b),
        ("testA", cfg.num_test_a),
        ("testB", cfg.num_test_b),
    ):
        assert len(list_images(root / split)) == n
    assert [p.name for p in list_images(root / "testB_clean")] == [p.name for p in list_images(root / "testB")]
    ds = shapesworld_domains(root, "trainA")
    assert sorted(ds.class_names) == sorted(cfg.classes)
    for k in range(5):
        item = ds[k]
        h, w = item["orig_size"]
        b = item["boxes"]
        assert len(b) >= 1 and (b[:, 0] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()


def test_target_is_foggy_version_of_its_clean_twin(quick_root: Path) -> None:
    root = quick_root / "domains"
    stds_fog, stds_clean, diffs = [], [], []
    for p in list_images(root / "testB")[:10]:
        fog = np.asarray(Image.open(p), np.float32)
        clean = np.asarray(Image.open(root / "testB_clean" / p.name), np.float32)
        stds_fog.append(fog.std())
        stds_clean.append(clean.std())
        # fog grows with depth: the top half (far) moves further from the clean image than the bottom (near)
        h = fog.shape[0]
        diffs.append(np.abs(fog - clean)[: h // 2].mean() - np.abs(fog - clean)[h // 2 :].mean())
    assert np.mean(stds_fog) < 0.8 * np.mean(stds_clean)
    assert np.mean(diffs) > 0


def test_unpaired_pairs(quick_root: Path) -> None:
    root = quick_root / "domains"
    ds = UnpairedImages(dir_a=root / "trainA", dir_b=root / "trainB", serial=True)
    item = ds[3]
    assert item["a"].shape == item["b"].shape == (3, 96, 160)
    assert Path(item["a_path"]).name == "trainA_000003.jpg" and Path(item["b_path"]).name == "trainB_000003.jpg"
    with pytest.raises(DataError, match="not found"):
        UnpairedImages(dir_a=root / "trainA", dir_b=root / "nope")


def test_voc_xml_detection_folder(tmp_path: Path) -> None:
    img = tmp_path / "images"
    ann = tmp_path / "Annotations"
    img.mkdir()
    ann.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(img / "a.jpg")
    (ann / "a.xml").write_text(voc_xml("a", 30, 20, [("car", (2, 3, 9, 12)), ("person", (0, 0, 4, 4))], False))
    ds = DetectionFolder(image_dir=img, annotations=ann)
    assert ds.class_names == ["car", "person"]
    item = ds[0]
    # 0-based inclusive (2, 3, 9, 12) -> exclusive extents (2, 3, 10, 13)
    assert item["boxes"].tolist() == [[2, 3, 10, 13], [0, 0, 5, 5]] and item["labels"].tolist() == [0, 1]
    ds = DetectionFolder(image_dir=img, annotations=ann, class_names=["car"])
    with pytest.raises(DataError, match="a.xml: unknown class 'person'"):
        ds[0]
