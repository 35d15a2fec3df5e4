"""``lowlabel data check`` and ``lowlabel data preview`` through the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from lowlabel.cli.main import main


@pytest.mark.parametrize("fmt", ["wsol", "voc", "davis", "coco", "video", "domains", "imagenet"])
def test_check_passes_on_shapesworld(quick_root: Path, fmt: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "check", fmt, str(quick_root)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("OK")


def test_check_names_missing_corrupt_and_mismatched_files(quick_root: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "voc"
    shutil.copytree(quick_root / "voc", root)
    ids = (root / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    (root / "JPEGImages" / f"{ids[0]}.jpg").unlink()
    jpg = root / "JPEGImages" / f"{ids[1]}.jpg"
    jpg.write_bytes(jpg.read_bytes()[:300])
    Image.new("P", (5, 5)).save(root / "SegmentationClass" / f"{ids[2]}.png")
    assert main(["data", "check", "voc", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"{ids[0]}.jpg: image file not found" in out
    assert f"{ids[1]}.jpg: corrupt or truncated image" in out
    assert f"{ids[2]}.png: mask size (5, 5) differs" in out
    assert "3 problem(s) found" in out


def test_check_wsol_size_mismatch_and_unknown_format(quick_root: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "wsol"
    shutil.copytree(quick_root / "wsol", root)
    sizes = root / "metadata" / "ShapesWorld" / "val" / "image_sizes.txt"
    lines = sizes.read_text().splitlines()
    image_id = lines[0].split(",")[0]
    sizes.write_text("\n".join([f"{image_id},1,1", *lines[1:]]) + "\n")
    assert main(["data", "check", "wsol", str(root)]) == 1
    assert f"{image_id} listed as (1, 1)" in capsys.readouterr().out
    assert main(["data", "check", "nonsense", str(root)]) == 2
    assert "unknown format" in capsys.readouterr().err


def test_preview_draws_a_grid(quick_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "grid.png"
    assert main(["data", "preview", str(quick_root), "--out", str(out)]) == 0
    im = Image.open(out)
    assert im.size == (4 * 160, 6 * 200)  # 4 columns, one row per ShapesWorld folder
    out2 = tmp_path / "coco.png"
    assert main(["data", "preview", str(quick_root / "coco"), "--out", str(out2), "--num", "6"]) == 0
    assert Image.open(out2).size == (4 * 160, 2 * 200)


def test_check_imagenet_names_every_bad_file(quick_root: Path, tmp_path: Path, capsys) -> None:
    root = tmp_path / "pretrain"
    shutil.copytree(quick_root / "pretrain", root)
    classes = (root / "classes.txt").read_text().split()
    (root / "val" / "unknown-class").mkdir()
    (root / "val" / "unknown-class" / "0.jpg").write_bytes((root / "val" / classes[0] / "000000.jpg").read_bytes())
    for image in (root / "train" / classes[1]).iterdir():
        image.unlink()
    shutil.copy(root / "train" / classes[2] / "000000.jpg", root / "train" / "stray.jpg")
    truncated = root / "train" / classes[3] / "000000.jpg"
    truncated.write_bytes(truncated.read_bytes()[:200])
    assert main(["data", "check", "imagenet", str(root)]) == 1
    out = capsys.readouterr().out
    assert "unknown-class: class folder 'unknown-class' is not among the 100 classes (classes.txt)" in out
    assert f"{classes[1]}: class folder with no images" in out
    assert "stray.jpg: image directly in the split folder" in out
    assert f"{classes[3]}/000000.jpg: corrupt or truncated image" in out
    assert "4 problem(s) found" in out


@pytest.mark.parametrize("fmt", ["cityscapes", "kitti", "sim10k"])
def test_check_cross_domain_layouts(fmt: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The real layouts of the cross-domain configs pass as written, and each kind of damage is named by its file."""
    from tests.methods.cross_domain.detection_fake import cityscapes_name, write_real_layouts

    root = write_real_layouts(tmp_path / "data") / fmt
    assert main(["data", "check", fmt, str(root)]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("OK")
    if fmt == "cityscapes":
        assert "val foggy beta 0.02: 2" in out and "classes (8): person, rider, car" in out
        stem = cityscapes_name("frankfurt", 1)
        (root / "leftImg8bit_foggy" / "val" / "frankfurt" / f"{stem}_leftImg8bit_foggy_beta_0.01.png").unlink()
        dense = root / "leftImg8bit_foggy" / "val" / "frankfurt" / f"{stem}_leftImg8bit_foggy_beta_0.02.png"
        dense.write_bytes(dense.read_bytes()[:100])
        expected = [f"{stem}_leftImg8bit_foggy_beta_0.01.png: foggy twin of frankfurt/{stem}_leftImg8bit.png not found",
                    f"{stem}_leftImg8bit_foggy_beta_0.02.png: corrupt or truncated image"]
    elif fmt == "kitti":
        labels = root / "training" / "label_2"
        (labels / "000001.txt").unlink()
        (labels / "000002.txt").write_text("Car 0.00 0 -1.57 1.00 2.00 300.00 20.00 1.5 1.6 3.9 -2.7 1.7 14.0 -1.6\n")
        (labels / "000009.txt").write_text("")
        expected = ["label_2/000001.txt: label file of 000001.png not found",
                    "label_2/000002.txt: box [1.0, 2.0, 300.0, 20.0] outside the 104x32 image 000002.png",
                    "label_2/000009.txt: label file without an image"]
    else:
        voc = root / "VOC2012"
        xml = sorted((voc / "Annotations").glob("*.xml"))
        xml[0].write_text(xml[0].read_text().replace("<xmin>", "<xmin>x"))
        (voc / "JPEGImages" / f"{xml[1].stem}.jpg").unlink()
        expected = [f"{xml[0].name}: malformed VOC annotation", f"{xml[1].name}: label file without an image"]
    assert main(["data", "check", fmt, str(root)]) == 1
    out = capsys.readouterr().out
    for line in expected:
        assert line in out, out
    assert f"{len(expected)} problem(s) found" in out
