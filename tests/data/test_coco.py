"""COCO instances/captions/OV split on ShapesWorld ``coco/``: official loaders, base/novel, captions."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from lowlabel.data.coco import COCODetection, load_ovd_split
from lowlabel.data.synth.classes import SYNONYMS, VOC_NAMES
from lowlabel.data.synth.config import get_preset, replace
from lowlabel.errors import DataError


def _paths(root: Path, split: str) -> dict:
    a = root / "coco" / "annotations"
    return {
        "image_dir": root / "coco" / f"{split}2017",
        "ann_file": a / f"instances_{split}.json",
        "captions_file": a / f"captions_{split}.json",
    }


def test_official_loaders_read_the_json(quick_root: Path) -> None:
    from faster_coco_eval import COCO as FCOCO
    from pycocotools.coco import COCO

    for split in ("train", "val"):
        ann = str(_paths(quick_root, split)["ann_file"])
        for api in (COCO(ann), FCOCO(ann)):
            assert len(api.getImgIds()) == getattr(get_preset("quick").coco, f"num_{split}")
            assert len(api.getCatIds()) == get_preset("quick").coco.num_classes and len(api.getAnnIds()) > 0


def test_base_novel_split(quick_root: Path) -> None:
    split = load_ovd_split(quick_root / "coco" / "annotations" / "ovd_split.json")
    cfg = get_preset("quick").coco
    assert (
        len(split["novel"]) == cfg.num_novel == 5
        and len(split["base"]) == cfg.num_classes - cfg.num_novel == 15
        and sorted(split["all"]) == sorted(split["base"] + split["novel"])
    )
    train = json.loads(_paths(quick_root, "train")["ann_file"].read_text())
    val = json.loads(_paths(quick_root, "val")["ann_file"].read_text())
    assert {a["category_id"] for a in train["annotations"]} <= set(split["base"])  # no novel boxes in train
    assert {a["category_id"] for a in val["annotations"]} & set(split["novel"])
    ids = [c["id"] for c in train["categories"]]
    assert ids != list(range(1, len(ids) + 1))  # non-contiguous ids, as in COCO
    ds = COCODetection(
        **_paths(quick_root, "val"), split_file=quick_root / "coco/annotations/ovd_split.json", subset="novel"
    )
    assert ds.cat_ids == sorted(split["novel"])
    novel_boxes = sum(len(ds[k]["boxes"]) for k in range(len(ds)))
    assert novel_boxes == sum(a["category_id"] in split["novel"] for a in val["annotations"]) > 0
    assert all(set(ds[k]["category_ids"].tolist()) <= set(split["novel"]) for k in range(len(ds)))


def test_full_coco_has_every_category_a_quarter_novel() -> None:
    """v1.6 (the CLIP teacher study found 3,000 images and 4 novel of 16 categories too few): 20 categories with
    their own words, 5 novel (OVR-CNN: 17 of 65), 6,000 train and 1,000 val images; quick and tiny stay small."""
    full = get_preset("full").coco
    assert (full.num_classes, full.num_novel, full.num_train, full.num_val) == (20, 5, 6000, 1000)
    assert get_preset("quick").coco.num_train <= 120 and get_preset("tiny").coco.num_train <= 16
    from lowlabel.data.synth.classes import category_look
    from lowlabel.data.synth.coco_task import class_words

    words = [w for k in range(full.num_classes) for w in class_words(k)]
    assert len(words) == len(set(words))  # no word names two categories
    looks = {(category_look(k).pattern, category_look(k).mark_colors) for k in range(full.num_classes)}
    assert len(looks) == full.num_classes  # every category has its own marking
    with pytest.raises(ValueError, match="num_classes"):
        replace(full, num_classes=21)


def _mentioned(caption: str) -> set[int]:
    text = caption.lower()
    found = set()
    for k, name in enumerate(VOC_NAMES):
        spoken = {"diningtable": "dining table", "tvmonitor": "tv monitor", "pottedplant": "potted plant"}.get(
            name, name
        )
        for word in {spoken, *SYNONYMS[name]}:
            if re.search(rf"\b{re.escape(word)}\b", text):
                found.add(k)
    return found


def test_captions_name_objects_of_the_image(quick_root: Path) -> None:
    ds = COCODetection(**_paths(quick_root, "val"))
    cfg = get_preset("quick").coco
    for k in range(len(ds)):
        item = ds[k]
        assert len(item["captions"]) == cfg.captions_per_image
        present = {VOC_NAMES.index(ds.class_names[int(i)]) for i in item["labels"]}
        for cap in item["captions"]:
            said = _mentioned(cap)
            assert said and said <= present, (cap, present)
    # train captions also name novel classes, which have no boxes there
    train = COCODetection(**_paths(quick_root, "train"))
    novel = set(range(cfg.num_classes - cfg.num_novel, cfg.num_classes))
    assert any(_mentioned(c) & novel for k in range(len(train)) for c in train.captions[train.ids[k]])


def test_boxes_are_exclusive_xyxy_of_the_polygons(quick_root: Path) -> None:
    ds = COCODetection(**_paths(quick_root, "val"))
    for k in range(5):
        img_id = ds.ids[k]
        item = ds[k]
        for box, ann in zip(item["boxes"].tolist(), ds.annotations[img_id]):
            x, y, w, h = ann["bbox"]
            assert box == [x, y, x + w, y + h]
            poly = np.concatenate([np.asarray(p).reshape(-1, 2) for p in ann["segmentation"]])
            assert poly[:, 0].min() >= x and poly[:, 0].max() <= x + w and poly[:, 1].max() <= y + h


def test_bad_json_names_the_file(quick_root: Path, tmp_path: Path) -> None:
    p = _paths(quick_root, "val")
    bad = tmp_path / "instances.json"
    bad.write_text('{"images": [')
    with pytest.raises(DataError, match=f"{bad}: malformed JSON"):
        COCODetection(image_dir=p["image_dir"], ann_file=bad)
    data = json.loads(p["ann_file"].read_text())
    data["annotations"][0]["category_id"] = 999
    bad.write_text(json.dumps(data))
    with pytest.raises(DataError, match="unknown category id 999"):
        COCODetection(image_dir=p["image_dir"], ann_file=bad)
    images = tmp_path / "img"
    shutil.copytree(p["image_dir"], images)
    first = sorted(images.iterdir())[0]
    first.unlink()
    ds = COCODetection(image_dir=images, ann_file=p["ann_file"])
    with pytest.raises(DataError, match=first.name):
        ds[0]
    assert COCODetection(image_dir=images, ann_file=p["ann_file"], skip_corrupt=True).skipped == 1


def test_lvis_style_json(tmp_path: Path, quick_root: Path) -> None:
    p = _paths(quick_root, "val")
    data = json.loads(p["ann_file"].read_text())
    for img in data["images"]:
        img["coco_url"] = "http://images.cocodataset.org/val2017/" + img.pop("file_name")
        img["neg_category_ids"], img["not_exhaustive_category_ids"] = [1], []
    lvis = tmp_path / "lvis_val.json"
    lvis.write_text(json.dumps(data))
    item = COCODetection(image_dir=p["image_dir"], ann_file=lvis)[0]
    assert item["neg_category_ids"] == [1] and item["file_name"].endswith(".jpg")
