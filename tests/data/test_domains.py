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


def test_kitti_label_folder(tmp_path: Path) -> None:
    """KITTI's label_2 files: the 0-based corners ``left top right bottom`` become exclusive extents; DontCare is no
    class; a malformed line names its file and line."""
    images, labels = tmp_path / "image_2", tmp_path / "label_2"
    images.mkdir()
    labels.mkdir()
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(images / "000000.png")
    rest = "1.5 1.6 3.9 -3.0 1.6 10.0 -1.6"
    (labels / "000000.txt").write_text(f"Car 0.00 0 -1.5 2.00 3.00 9.50 12.00 {rest}\n"
                                       f"Pedestrian 0.10 1 0.2 20.00 1.00 24.00 18.00 {rest}\n"
                                       "DontCare -1 -1 -10 30.00 2.00 38.00 9.00 -1 -1 -1 -1000 -1000 -1000 -10\n")
    ds = DetectionFolder(image_dir=images, annotations=labels)
    assert ds.class_names == ["Car", "Pedestrian"]
    item = ds[0]
    assert item["boxes"].tolist() == [[2, 3, 10.5, 13], [20, 1, 25, 19]] and item["labels"].tolist() == [0, 1]
    assert item["file_name"] == "000000.png" and item["image_id"] == "000000"
    assert DetectionFolder(image_dir=images, annotations=labels, class_names=["Pedestrian", "Car"])[0][
        "labels"].tolist() == [1, 0]
    (labels / "000000.txt").write_text("Car 0.00 0 -1.5 2.00 3.00\n")
    with pytest.raises(DataError, match=r"000000\.txt:1: expected 15 values"):
        DetectionFolder(image_dir=images, annotations=labels, class_names=["Car"])[0]


def test_file_suffix_and_annotated_names(tmp_path: Path) -> None:
    """Foggy Cityscapes under Cityscapes' COCO boxes: only the beta-0.02 files are read, each under the clean name the
    annotations give it; list_images and UnpairedImages keep only the files of one ending."""
    import json

    foggy = tmp_path / "leftImg8bit_foggy" / "val" / "lindau"
    foggy.mkdir(parents=True)
    for beta, value in (("0.005", 1), ("0.01", 2), ("0.02", 3)):
        for i in range(2):
            Image.fromarray(np.full((8, 16, 3), value, np.uint8)).save(
                foggy / f"lindau_000000_00001{i}_leftImg8bit_foggy_beta_{beta}.png")
    images = [{"id": i + 1, "file_name": f"lindau/lindau_000000_00001{i}_leftImg8bit.png", "width": 16, "height": 8}
              for i in range(2)]
    boxes = [{"id": 1, "image_id": 2, "category_id": 26, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0}]
    (tmp_path / "val.json").write_text(json.dumps({"images": images, "annotations": boxes,
                                                   "categories": [{"id": 26, "name": "car"}]}))
    root = tmp_path / "leftImg8bit_foggy" / "val"
    ds = DetectionFolder(image_dir=root, annotations=tmp_path / "val.json",
                         file_suffix="_leftImg8bit_foggy_beta_0.02.png", annotated_suffix="_leftImg8bit.png")
    assert ds.file_names() == [im["file_name"] for im in images] and len(ds) == 2
    item = ds[1]
    assert item["file_name"] == "lindau/lindau_000000_000011_leftImg8bit.png"
    assert int(item["image"].max()) == 3 and item["boxes"].tolist() == [[1, 2, 4, 6]]  # the beta-0.02 file
    with pytest.raises(DataError, match=r"val\.json: no image file_name ends with '_leftImg8bit_foggy'"):
        DetectionFolder(image_dir=root, annotations=tmp_path / "val.json", file_suffix="x.png",
                        annotated_suffix="_leftImg8bit_foggy")
    assert [p.name[-9:] for p in list_images(root, suffix="_beta_0.02.png")] == ["_0.02.png", "_0.02.png"]
    with pytest.raises(DataError, match="no image file name ends with '_beta_0.2.png'"):
        list_images(root, suffix="_beta_0.2.png")
    pairs = UnpairedImages(dir_a=root, dir_b=root, suffix_a="_beta_0.02.png", serial=True)
    assert len(pairs) == 6 and len(pairs.a) == 2 and int(pairs[0]["a"].max()) == 3
