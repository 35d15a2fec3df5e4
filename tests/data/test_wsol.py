"""WSOLDataset on ShapesWorld ``wsol/`` and on hand-made broken metadata."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import v2

from lowlabel.data.synth.config import get_preset
from lowlabel.data.wsol import WSOLDataset, read_wsol_metadata, shapesworld_wsol
from lowlabel.errors import DataError


def test_counts_classes_and_boxes_match_masks(quick_root: Path) -> None:
    cfg = get_preset("quick").wsol
    root = quick_root / "wsol"
    for split, n in (("train", cfg.num_train), ("val", cfg.num_val), ("test", cfg.num_test)):
        assert len(shapesworld_wsol(root, split)) == n
    ds = shapesworld_wsol(root, "test")
    assert ds.num_classes == cfg.num_classes and ds.class_names[:2] == ["aeroplane", "bicycle"]
    assert set(ds.labels.values()) <= set(range(cfg.num_classes))
    masks = shapesworld_wsol(root, "test", masks=True)
    assert masks.has_masks() and len(masks.mask_items()) == cfg.num_test
    for k in range(0, len(ds), 7):
        item = ds[k]
        h, w = item["orig_size"]
        assert item["image"].shape == (3, h, w) and item["image"].dtype == torch.uint8
        mask, ignore = masks.load_masks(item["image_id"])
        ys, xs = np.nonzero(mask)  # the box is the inclusive extent of the object mask
        assert item["boxes"].tolist() == [[xs.min(), ys.min(), xs.max(), ys.max()]]
        assert not (ignore & mask).any() and ignore.any()
        assert ds.sizes[item["image_id"]] == (h, w)


def test_boxes_follow_the_image_under_v2_transforms(quick_root: Path) -> None:
    masks = shapesworld_wsol(quick_root / "wsol", "val", masks=True)
    ds = shapesworld_wsol(quick_root / "wsol", "val")
    flip_resize = v2.Compose([v2.RandomHorizontalFlip(p=1.0), v2.Resize((64, 64), antialias=True)])
    for k in range(5):
        item = ds[k]
        h, w = item["orig_size"]
        mask, _ = masks.load_masks(item["image_id"])
        # exclusive-extent box so that it maps exactly like the mask under resize
        x0, y0, x1, y1 = item["boxes"][0].tolist()
        box = tv_tensors.BoundingBoxes([[x0, y0, x1 + 1, y1 + 1]], format="XYXY", canvas_size=(h, w))
        img, (b, m) = flip_resize(item["image"], (box, tv_tensors.Mask(torch.from_numpy(mask.astype(np.uint8)))))
        assert img.shape == (3, 64, 64)
        ys, xs = np.nonzero(m.numpy())
        # flipped and rescaled independently: box and mask extents agree within a resampling pixel
        expect = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        assert np.allclose(b[0].tolist(), expect, atol=1.5), (b.tolist(), expect)
        assert b[0, 0] == pytest.approx((w - (x1 + 1)) * 64 / w, abs=1e-3)


def _copy_meta(quick_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    src = quick_root / "wsol"
    meta = tmp_path / "metadata" / "ShapesWorld" / "val"
    shutil.copytree(src / "metadata" / "ShapesWorld" / "val", meta)
    images = tmp_path / "images"
    shutil.copytree(src / "images" / "ShapesWorld" / "val", images / "val")
    return images, meta


def test_bad_input_names_the_file(quick_root: Path, tmp_path: Path) -> None:
    images, meta = _copy_meta(quick_root, tmp_path)
    ds = WSOLDataset(data_root=images, metadata_dir=meta)
    first = images / ds.image_ids[0]
    first.write_bytes(first.read_bytes()[:200])  # truncated JPEG
    with pytest.raises(DataError, match=str(first)):
        ds[0]
    (images / ds.image_ids[1]).unlink()  # id listed, file missing
    with pytest.raises(DataError, match="not found"):
        ds[1]
    skipping = WSOLDataset(data_root=images, metadata_dir=meta, skip_corrupt=True)
    assert skipping.skipped == 1 and len(skipping) == len(ds) - 1
    labels = meta / "class_labels.txt"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join([lines[0], "val/000001.jpg;3", *lines[2:]]) + "\n")
    with pytest.raises(DataError, match=r"class_labels.txt:2"):
        WSOLDataset(data_root=images, metadata_dir=meta)
    labels.write_text("\n".join(lines[:1] + ["val/unknown.jpg,3"] + lines[2:]) + "\n")
    with pytest.raises(DataError, match="not in image_ids"):
        WSOLDataset(data_root=images, metadata_dir=meta)


def test_openimages_style_multi_instance_masks(tmp_path: Path) -> None:
    """Two instance lines for one image: the mask is their union; only the first line names the ignore mask."""
    (tmp_path / "img").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "img" / "a.jpg")
    m1, m2, ign = (np.zeros((8, 8), np.uint8) for _ in range(3))
    m1[0:2, 0:2], m2[5:7, 5:7], ign[0:4, 0:4] = 255, 255, 255
    for name, arr in (("m1.png", m1), ("m2.png", m2), ("ig.png", ign)):
        Image.fromarray(arr).save(tmp_path / name)
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "image_ids.txt").write_text("a.jpg\n")
    (meta / "class_labels.txt").write_text("a.jpg,0\n")
    (meta / "localization.txt").write_text("a.jpg,m1.png,ig.png\na.jpg,m2.png,\n")
    ds = WSOLDataset(data_root=tmp_path / "img", metadata_dir=meta, mask_root=tmp_path)
    mask, ignore = ds.load_masks("a.jpg")
    assert mask.sum() == 8 and ignore.sum() == 16 - 4
    assert ds[0]["boxes"].shape == (0, 4) and ds.mask_path("a.jpg") == tmp_path / "m1.png"


def _meta(folder: Path, **files: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / f"{name}.txt").write_text(text)
    return folder


def test_one_metadata_reader_for_datasets_and_scoring(tmp_path: Path) -> None:
    """``read_wsol_metadata`` is what both WSOLDataset and ``score wsol`` read; sizes are (W, H) in it."""
    meta = _meta(tmp_path / "m", image_ids="a.jpg\nb.jpg\n", class_labels="a.jpg,1\nb.jpg,0\n",
                 image_sizes="a.jpg,30,20\nb.jpg,8,8\n",
                 localization="a.jpg,1,2,10,12\na.jpg,0,0,3,3\nb.jpg,0,0,7,7\n")  # fmt: skip
    m = read_wsol_metadata(meta, require_localization=True)
    assert m.image_ids == ["a.jpg", "b.jpg"] and m.labels == {"a.jpg": 1, "b.jpg": 0} and not m.has_masks
    assert m.sizes == {"a.jpg": (30, 20), "b.jpg": (8, 8)}
    assert m.boxes == {"a.jpg": [[1, 2, 10, 12], [0, 0, 3, 3]], "b.jpg": [[0, 0, 7, 7]]}
    (tmp_path / "img").mkdir()
    ds = WSOLDataset(data_root=tmp_path / "img", metadata_dir=meta)
    assert ds.sizes["a.jpg"] == (20, 30) and ds.boxes == m.boxes and ds.labels == m.labels  # dataset sizes: (H, W)
    # box metadata needs the sizes for scoring (boxes are rescaled to 224); a training reader does not
    (meta / "image_sizes.txt").write_text("a.jpg,30,20\n")
    with pytest.raises(DataError, match=r"image_sizes.txt: no size for image id 'b.jpg'"):
        read_wsol_metadata(meta, require_localization=True)
    assert read_wsol_metadata(meta).sizes == {"a.jpg": (30, 20)}


def test_openimages_metadata_without_sizes_is_complete_for_scoring(tmp_path: Path) -> None:
    meta = _meta(tmp_path / "m", image_ids="a.jpg\nb.jpg\n", class_labels="a.jpg,0\nb.jpg,1\n",
                 localization="a.jpg,a_m0.png,a_ignore.png\na.jpg,a_m1.png,\nb.jpg,b_m0.png,\n")  # fmt: skip
    m = read_wsol_metadata(meta, require_localization=True)
    assert m.has_masks and m.sizes == {} and m.boxes == {}
    assert m.masks == {"a.jpg": ["a_m0.png", "a_m1.png"], "b.jpg": ["b_m0.png"]} and m.ignore == {
        "a.jpg": "a_ignore.png"
    }
    (meta / "localization.txt").write_text("a.jpg,a_m0.png,a_ignore.png\n")
    with pytest.raises(DataError, match=r"localization.txt: no box or mask for image id 'b.jpg'"):
        read_wsol_metadata(meta, require_localization=True)
    (meta / "localization.txt").unlink()  # a training split: labels only
    assert read_wsol_metadata(meta).masks == {}
    with pytest.raises(DataError, match=r"localization.txt: file not found"):
        read_wsol_metadata(meta, require_localization=True)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("class_labels", "a.jpg,0\n\nb.jpg,x\n", r"class_labels.txt:3: label 'x' is not an integer"),
        ("class_labels", "a.jpg,0\n", r"class_labels.txt: no label for image id 'b.jpg' \(1 missing\)"),
        ("image_sizes", "a.jpg,8\n", r"image_sizes.txt:1: expected 3 comma-separated fields, got 2"),
        ("image_sizes", "a.jpg,8,8\nc.jpg,8,8\n", r"image_sizes.txt:2: image id 'c.jpg' is not in image_ids.txt"),
        ("localization", "a.jpg,0,0,1\n", r"localization.txt:1: expected 'id,x0,y0,x1,y1' or 'id,mask_path,"),
        ("localization", "a.jpg,0,0,x,1\n", r"localization.txt:1: box coordinates must be numbers"),
    ],
)
def test_metadata_errors_name_file_and_line(tmp_path: Path, name: str, text: str, message: str) -> None:
    """Line numbers count blank lines, as an editor does."""
    files = {"image_ids": "a.jpg\nb.jpg\n", "class_labels": "a.jpg,0\nb.jpg,1\n", "image_sizes": "a.jpg,8,8\n",
             "localization": "a.jpg,0,0,1,1\n"}  # fmt: skip
    meta = _meta(tmp_path / "m", **{**files, name: text})
    with pytest.raises(DataError, match=message):
        read_wsol_metadata(meta)


def test_an_object_hidden_entirely_is_drawn_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wsol image whose one object ends up with no visible pixel (it happened in `full` world 1) is drawn again
    from a derived generator; a first draw that is visible keeps its original generator (the bytes of seed 0)."""
    from lowlabel.data.synth import wsol_task

    real = wsol_task.compose
    calls: list[int] = []

    def compose_hiding_the_first(rng, labels, obj, scene):  # type: ignore[no-untyped-def]
        out = real(rng, labels, obj, scene)
        calls.append(1)
        if len(calls) == 1:
            out.instances[0].visible[:] = False
        return out

    cfg = get_preset("tiny").wsol
    first = wsol_task._job((cfg, tmp_path / "a", "train", 3, 0))
    monkeypatch.setattr(wsol_task, "compose", compose_hiding_the_first)
    redrawn = wsol_task._job((cfg, tmp_path / "b", "train", 3, 0))
    assert len(calls) == 2 and redrawn["box"] is not None and first["box"] is not None
    monkeypatch.setattr(wsol_task, "compose", lambda *a: (out := real(*a), out.instances[0].visible.fill(False))[0])
    with pytest.raises(RuntimeError, match="no visible object in 100 draws"):
        wsol_task._job((cfg, tmp_path / "c", "train", 3, 0))
