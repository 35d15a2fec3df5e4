"""VOCSegmentation on ShapesWorld ``voc/``: palette, 255 band, labels vs XML, alignment, bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lowlabel.data import transforms as T
from lowlabel.data.synth.config import get_preset
from lowlabel.data.voc import VOC_CLASSES, VOCSegmentation
from lowlabel.errors import DataError
from lowlabel.structures import voc_palette


def test_lists_and_counts(quick_root: Path) -> None:
    cfg = get_preset("quick").voc
    root = quick_root / "voc"
    assert len(VOCSegmentation(root=root, split="train")) == cfg.num_train
    assert len(VOCSegmentation(root=root, split="val")) == cfg.num_val
    aug = VOCSegmentation(root=root, split="train_aug")
    assert len(aug) == cfg.num_train + cfg.num_aug_extra
    last = aug[len(aug) - 1]
    assert last["mask"] is None and last["labels"].sum() >= 1  # SBD-style id: labels from XML, no PNG
    assert aug.class_names == list(VOC_CLASSES) and aug.num_classes == 20


def test_palette_png_and_ignore_band(quick_root: Path) -> None:
    root = quick_root / "voc"
    ds = VOCSegmentation(root=root, split="train")
    for image_id in ds.image_ids[:15]:
        im = Image.open(root / "SegmentationClass" / f"{image_id}.png")
        assert im.mode == "P" and im.getpalette()[: 3 * 256] == voc_palette()
        m = np.asarray(im)
        assert (m == 255).any()
        # no two 4-neighbours carry different non-ignore labels: every label change is inside the 255 band
        for a, b in ((m[:, 1:], m[:, :-1]), (m[1:, :], m[:-1, :])):
            assert not ((a != b) & (a != 255) & (b != 255)).any()


def test_labels_boxes_and_masks_agree(quick_root: Path) -> None:
    ds = VOCSegmentation(root=quick_root / "voc", split="train")
    for k in range(0, len(ds), 5):
        item = ds[k]
        m = item["mask"].numpy()
        in_mask = set(np.unique(m)) - {0, 255}
        in_xml = {int(c) + 1 for c in item["box_labels"]}
        assert in_mask <= in_xml
        assert set(np.flatnonzero(item["labels"].numpy()) + 1) == in_xml
        for c in in_mask:  # every pixel of class c lies in some XML box of class c (inclusive corners)
            ys, xs = np.nonzero(m == c)
            inside = np.zeros(len(xs), bool)
            for box, lab in zip(item["boxes"].tolist(), item["box_labels"].tolist()):
                if lab + 1 == c:
                    inside |= (xs >= box[0]) & (xs <= box[2]) & (ys >= box[1]) & (ys <= box[3])
            assert inside.all()


def test_seg_transform_keeps_mask_aligned_and_pads_with_255(quick_root: Path) -> None:
    torch.manual_seed(0)
    ds = VOCSegmentation(root=quick_root / "voc", split="val", transforms=T.seg_train(crop=200, base=120))
    raw = VOCSegmentation(root=quick_root / "voc", split="val")
    for k in range(4):
        item = ds[k]
        assert item["image"].shape == (3, 200, 200) and item["mask"].shape == (200, 200)
        assert item["image"].dtype == torch.float32 and item["mask"].dtype == torch.uint8
        assert (item["mask"] == 255).float().mean() > 0.1  # crop larger than the image: padded with ignore
        assert set(item["mask"].unique().tolist()) <= set(raw[k]["mask"].unique().tolist()) | {255}


def _copy(quick_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "voc"
    shutil.copytree(quick_root / "voc", root, ignore=shutil.ignore_patterns("diagnostics"))
    return root


def test_bad_input_names_the_file(quick_root: Path, tmp_path: Path) -> None:
    root = _copy(quick_root, tmp_path)
    ds = VOCSegmentation(root=root, split="val")
    i0, i1, i2 = ds.image_ids[:3]
    xml = root / "Annotations" / f"{i0}.xml"
    xml.write_text(xml.read_text().replace("<name>", "<name>zebra", 1))
    with pytest.raises(DataError, match=rf"{i0}.xml.*unknown class 'zebra"):
        ds[0]
    (root / "Annotations" / f"{i1}.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match=rf"{i1}.xml: malformed XML"):
        ds[1]
    (root / "JPEGImages" / f"{i2}.jpg").unlink()
    with pytest.raises(DataError, match=rf"{i2}.jpg: image file not found"):
        ds[2]
    skipping = VOCSegmentation(root=root, split="val", skip_corrupt=True)
    assert skipping.skipped == 1
    with pytest.raises(DataError, match="split list not found"):
        VOCSegmentation(root=root, split="test")


def test_label_list_file_overrides_xml(quick_root: Path, tmp_path: Path) -> None:
    ds = VOCSegmentation(root=quick_root / "voc", split="val")
    lst = tmp_path / "labels.txt"
    lst.write_text("".join(f"{x} dog cat\n" for x in ds.image_ids))
    item = VOCSegmentation(root=quick_root / "voc", split="val", label_list=lst)[0]
    assert np.flatnonzero(item["labels"].numpy()).tolist() == [VOC_CLASSES.index("cat"), VOC_CLASSES.index("dog")]
    npy = tmp_path / "cls_labels.npy"
    np.save(npy, {x: np.eye(20)[3] for x in ds.image_ids})
    item = VOCSegmentation(root=quick_root / "voc", split="val", label_list=npy)[1]
    assert np.flatnonzero(item["labels"].numpy()).tolist() == [3]
