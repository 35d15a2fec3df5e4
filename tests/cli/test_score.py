"""``lowlabel score ...`` on tiny hand-made folders in the official formats: values, JSON keys, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lowlabel.cli import main as cli_main
from lowlabel.structures import voc_palette


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli_main.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def png(path: Path, arr: np.ndarray, palette: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(arr.astype(np.uint8))  # mode L
    if palette:
        img.putpalette(voc_palette())  # L -> P with the same indices
    img.save(path)


def block(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    cam = np.zeros((224, 224), np.float32)
    cam[y0:y1, x0:x1] = 1.0
    return cam


def wsol_boxes(tmp: Path) -> tuple[Path, Path]:
    meta, maps = tmp / "meta", tmp / "maps"
    write(meta / "image_ids.txt", "a/1.jpg\nb/2.jpg\n")
    write(meta / "class_labels.txt", "a/1.jpg,3\nb/2.jpg,1\n")
    write(meta / "image_sizes.txt", "a/1.jpg,448,448\nb/2.jpg,224,224\n")
    # a: (20, 20, 100, 100) on 448 -> (10, 10, 50, 50), which the CAM block gives exactly; b: the CAM misses
    write(meta / "localization.txt", "a/1.jpg,20,20,100,100\nb/2.jpg,0,0,20,20\nb/2.jpg,200,0,223,10\n")
    (maps / "a").mkdir(parents=True)
    (maps / "b").mkdir()
    np.save(maps / "a/1.jpg.npy", block(10, 10, 50, 50))
    np.save(maps / "b/2.jpg.npy", block(100, 100, 150, 150))
    return meta, maps


def test_wsol_boxes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta, maps = wsol_boxes(tmp_path)
    write(tmp_path / "pred.csv", "a/1.jpg,3\nb/2.jpg,1\n")
    out_json = tmp_path / "out.json"
    argv = ["score", "wsol", "--metadata", str(meta), "--scoremaps", str(maps), "--predictions",
            str(tmp_path / "pred.csv"), "--json", str(out_json)]  # fmt: skip
    code, out, _ = run(argv, capsys)
    assert code == 0 and "MaxBoxAccV2" in out
    res = json.loads(out_json.read_text())
    for key in ("MaxBoxAccV2", "MaxBoxAccV2@30", "MaxBoxAccV2@50", "MaxBoxAccV2@70", "GT-known Loc", "Top-1 Loc"):
        assert res[key] == 50.0, key
    assert res["Top-1 Cls"] == 100.0


def test_wsol_extra_scoremaps_and_predictions_warn_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Files and lines of images outside the metadata are ignored (the numbers stay) with one warning line each."""
    meta, maps = wsol_boxes(tmp_path)
    (maps / "c").mkdir()
    for name in ("c/4.jpg.npy", "c/3.jpg.npy", "z.npy"):  # a perfect map for no image: must not count
        np.save(maps / name, block(10, 10, 50, 50))
    (maps / "notes.txt").write_text("not a score map\n")
    pred = write(tmp_path / "pred.csv", "a/1.jpg,3\nx/9.jpg,0\nb/2.jpg,1\nc/3.jpg,2\n")
    out_json = tmp_path / "out.json"
    argv = ["score", "wsol", "--metadata", str(meta), "--scoremaps", str(maps), "--predictions", str(pred),
            "--json", str(out_json)]  # fmt: skip
    code, _, err = run(argv, capsys)
    assert code == 0, err
    res = json.loads(out_json.read_text())
    assert res["MaxBoxAccV2"] == 50.0 and res["Top-1 Loc"] == 50.0 and res["Top-1 Cls"] == 100.0
    official = "ignored, as wsolevaluation does"
    assert err.splitlines() == [
        f"warning: 3 score maps in {maps} are not in the metadata (first: c/3.jpg.npy); {official}",
        f"warning: 2 predictions in {pred} are for images not in the metadata (first: x/9.jpg); ignored",
    ]
    (maps / "c/4.jpg.npy").unlink()
    (maps / "z.npy").unlink()
    code, _, err = run(argv[:6], capsys)  # no --predictions
    assert code == 0 and err.splitlines() == [
        f"warning: 1 score map in {maps} is not in the metadata (first: c/3.jpg.npy); {official}"
    ]
    (maps / "c/3.jpg.npy").unlink()
    code, _, err = run(argv[:6], capsys)
    assert code == 0 and err == ""


@pytest.mark.parametrize("problem", ["missing", "nan", "shape", "box"])
def test_wsol_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str) -> None:
    meta, maps = wsol_boxes(tmp_path)
    if problem == "missing":
        (maps / "b/2.jpg.npy").unlink()
    elif problem == "nan":
        np.save(maps / "b/2.jpg.npy", np.full((224, 224), np.nan, np.float32))
    elif problem == "shape":
        np.save(maps / "b/2.jpg.npy", np.zeros((100, 100), np.float32))
    else:
        write(meta / "localization.txt", "a/1.jpg,20,20,10,100\nb/2.jpg,0,0,20,20\n")
    code, _, err = run(["score", "wsol", "--metadata", str(meta), "--scoremaps", str(maps)], capsys)
    expected = {"missing": "missing score map for image 'b/2.jpg'", "nan": "NaN", "shape": "(100, 100)",
                "box": "localization.txt:1: box has x1 < x0"}[problem]  # fmt: skip
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1


def test_wsol_masks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meta, maps, masks = tmp_path / "meta", tmp_path / "maps", tmp_path / "masks"
    write(meta / "image_ids.txt", "x.jpg\n")
    write(meta / "class_labels.txt", "x.jpg,0\n")
    write(meta / "image_sizes.txt", "x.jpg,112,112\n")
    write(meta / "localization.txt", "x.jpg,x_m0.png,x_ignore.png\nx.jpg,x_m1.png,\n")
    m0 = np.zeros((112, 112), np.uint8)
    m0[5:20, 5:20] = 255
    m1 = np.zeros((112, 112), np.uint8)
    m1[50:60, 50:60] = 255
    ign = np.zeros((112, 112), np.uint8)
    ign[0:30, 0:30] = 255
    for name, arr in (("x_m0.png", m0), ("x_m1.png", m1), ("x_ignore.png", ign)):
        png(masks / name, arr, palette=False)
    cam = np.zeros((224, 224), np.float32)
    cam[10:40, 10:40] = 1.0  # the first instance (x2 on the 224 grid)
    cam[100:120, 100:120] = 0.5  # the second instance, lower score
    cam[0:8, 0:8] = 0.9  # inside the ignore box: not counted
    maps.mkdir()
    np.save(maps / "x.jpg.npy", cam)
    np.save(maps / "y.jpg.npy", 1.0 - cam)  # an image outside the metadata: ignored
    out_json = tmp_path / "o.json"
    argv = ["score", "wsol", "--metadata", str(meta), "--scoremaps", str(maps), "--mask-root", str(masks),
            "--json", str(out_json)]  # fmt: skip
    code, _, err = run(argv, capsys)
    assert code == 0, err
    assert json.loads(out_json.read_text()) == {"PxAP": pytest.approx(100.0)}  # positives outrank every negative
    assert err.startswith(f"warning: 1 score map in {maps} is not in the metadata (first: y.jpg.npy); ignored")
    assert len(err.splitlines()) == 1
    # wsolevaluation's OpenImages metadata has no image_sizes.txt: masks do not need it
    (meta / "image_sizes.txt").unlink()
    (maps / "y.jpg.npy").unlink()
    code, _, err = run(argv, capsys)
    assert code == 0 and err == "" and json.loads(out_json.read_text()) == {"PxAP": pytest.approx(100.0)}


def test_semseg(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = np.array([[0, 0, 1, 1], [0, 255, 1, 1]])
    pred = np.array([[0, 0, 1, 2], [0, 0, 1, 255]])
    png(tmp_path / "gt/im1.png", gt)
    png(tmp_path / "pred/im1.png", pred, palette=False)
    write(tmp_path / "ids.txt", "im1\n")
    out_json = tmp_path / "o.json"
    argv = ["score", "semseg", "--gt-dir", str(tmp_path / "gt"), "--pred-dir", str(tmp_path / "pred"), "--ids",
            str(tmp_path / "ids.txt"), "--num-classes", "3", "--json", str(out_json)]  # fmt: skip
    code, _, err = run(argv, capsys)
    assert code == 0, err
    res = json.loads(out_json.read_text())
    # class 0: 3/3; class 1: tp 2, gt 3 (255-pred pixel of a 1 drops out: gt 4 - 1), pred 2 -> 2/3; class 2: 0/1
    assert res["IoU"] == [pytest.approx(100.0), pytest.approx(200 / 3), 0.0]
    png(tmp_path / "pred/im1.png", np.zeros((3, 4)))
    code, _, err = run(argv, capsys)
    assert code == 2 and "im1.png: size (4, 3) differs from its GT (4, 2)" in err


def test_semseg_refuses_predicted_ids_beyond_num_classes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An id in [K, 255) is a palette/offset mistake: one error line naming the file and the id, no score."""
    gt = np.array([[0, 0, 1, 1], [0, 255, 1, 1]])
    png(tmp_path / "gt/2007_000032.png", gt)
    png(tmp_path / "gt/2007_000033.png", gt)
    png(tmp_path / "pred/2007_000032.png", np.array([[0, 0, 1, 1], [0, 0, 1, 255]]), palette=False)  # valid
    png(tmp_path / "pred/2007_000033.png", np.array([[0, 0, 21, 1], [0, 0, 1, 1]]), palette=False)
    write(tmp_path / "ids.txt", "2007_000032\n2007_000033\n")
    out_json = tmp_path / "o.json"
    argv = ["score", "semseg", "--gt-dir", str(tmp_path / "gt"), "--pred-dir", str(tmp_path / "pred"), "--ids",
            str(tmp_path / "ids.txt"), "--json", str(out_json)]  # fmt: skip
    code, _, err = run(argv, capsys)
    assert code == 2 and not out_json.exists()
    assert err.splitlines() == [
        f"error: {tmp_path / 'pred/2007_000033.png'}: predicted class id 21 >= --num-classes 21 (255 is ignore)"
    ]
    png(tmp_path / "pred/2007_000033.png", np.array([[0, 0, 21, 1], [0, 0, 40, 1]]), palette=False)
    code, _, err = run(argv, capsys)
    assert code == 2 and "predicted class id 21 >= --num-classes 21 (255 is ignore); 2 such ids, up to 40" in err
    # 20 and 255 are fine: the file is scored
    png(tmp_path / "pred/2007_000033.png", np.array([[0, 0, 20, 1], [0, 0, 255, 1]]), palette=False)
    code, _, err = run(argv, capsys)
    assert code == 0 and err == "" and json.loads(out_json.read_text())["mIoU"] is not None


def davis_root(tmp: Path, frames: int = 5) -> Path:
    root = tmp / "DAVIS"
    write(root / "ImageSets/2017/val.txt", "seq\n")
    for t in range(frames):
        lab = np.zeros((24, 32), np.uint8)
        lab[4:12, 4 + t : 12 + t] = 1
        lab[15:20, 20:28] = 2
        png(root / f"Annotations/480p/seq/{t:05d}.png", lab)
    return root


def test_davis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = davis_root(tmp_path)
    res_dir = tmp_path / "res"
    for t in range(1, 4):
        lab = np.array(Image.open(root / f"Annotations/480p/seq/{t:05d}.png"))
        lab[lab == 2] = 0  # object 2 is missing from the prediction
        png(res_dir / f"seq/{t:05d}.png", lab)
    out_json = tmp_path / "o.json"
    argv = ["score", "davis", "--davis-root", str(root), "--results", str(res_dir), "--json", str(out_json)]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    res = json.loads(out_json.read_text())
    assert res["J-Mean"] == pytest.approx(50.0) and res["J&F-Mean"] == pytest.approx(50.0)
    lines = (res_dir / "per-sequence_results-val.csv").read_text().splitlines()
    assert lines == ["Sequence,J-Mean,F-Mean", "seq_1,1.000,1.000", "seq_2,0.000,0.000"]
    assert (res_dir / "global_results-val.csv").read_text().splitlines()[1].startswith("0.500,0.500,0.500,")
    (res_dir / "seq/00002.png").unlink()
    code, _, err = run(argv, capsys)
    assert code == 2 and "lacks 1 frame(s): 00002" in err


def coco_gt(tmp: Path) -> Path:
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 5, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 5, "bbox": [50, 50, 20, 20], "area": 400, "iscrowd": 0},
        ],
    }
    return write(tmp / "gt.json", json.dumps(gt))


def test_coco(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = coco_gt(tmp_path)
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9}]
    write(tmp_path / "d.json", json.dumps(dets))
    write(tmp_path / "split.json", json.dumps({"all": [1, 5], "novel": [5], "base": [1]}))
    out_json = tmp_path / "o.json"
    argv = ["score", "coco", "--gt", str(gt), "--detections", str(tmp_path / "d.json"), "--split",
            str(tmp_path / "split.json"), "--json", str(out_json)]  # fmt: skip
    code, out, err = run(argv, capsys)
    assert code == 0, err
    res = json.loads(out_json.read_text())
    assert res["base"]["AP50"] == pytest.approx(100.0) and res["novel"]["AP50"] == 0.0
    assert res["all"]["AP50"] == pytest.approx(50.0) and set(res["all"]) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
    assert res["per_class"]["cat"]["AP"] == pytest.approx(100.0)
    write(tmp_path / "d.json", "[]")  # an empty detection file is scored, not an error
    code, _, err = run(argv, capsys)
    assert code == 0 and json.loads(out_json.read_text())["all"]["AP"] == 0.0
    write(tmp_path / "d.json", json.dumps([{**dets[0], "category_id": 7}]))
    code, _, err = run(argv, capsys)
    assert code == 2 and "unknown category id 7" in err


def voc_root(tmp: Path) -> Path:
    root = tmp / "VOC"
    write(root / "ImageSets/Main/trainval.txt", "im1\nim2\n")
    obj = "<object><name>{}</name><difficult>{}</difficult><bndbox><xmin>{}</xmin><ymin>{}</ymin><xmax>{}</xmax><ymax>{}</ymax></bndbox></object>"  # noqa: E501
    write(root / "Annotations/im1.xml", f"<annotation>{obj.format('cat', 0, 1, 1, 10, 10)}</annotation>")
    xml2 = obj.format("cat", 0, 1, 1, 10, 10) + obj.format("dog", 1, 20, 20, 40, 40)
    write(root / "Annotations/im2.xml", f"<annotation>{xml2}</annotation>")
    return root


def test_corloc_and_voc_ap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = voc_root(tmp_path)
    dets = tmp_path / "dets"
    write(dets / "cat.txt", "im1 0.9 1 1 10 10\nim2 0.8 30 30 40 40\n")  # hit, miss
    write(dets / "dog.txt", "im2 0.5 20 20 40 40\n")
    out_json = tmp_path / "o.json"
    code, _, err = run(["score", "corloc", "--voc-root", str(root), "--detections", str(dets), "--json", str(out_json)],
                       capsys)  # fmt: skip
    assert code == 0, err
    res = json.loads(out_json.read_text())
    assert res["per_class"] == {"cat": 50.0, "dog": 100.0} and res["CorLoc"] == 75.0
    argv = ["score", "voc-ap", "--voc-root", str(root), "--detections", str(dets), "--set", "trainval",
            "--json", str(out_json)]  # fmt: skip
    code, _, err = run(argv, capsys)
    assert code == 0, err
    res = json.loads(out_json.read_text())
    # cat: TP then FP, 2 GT -> rec [.5, .5], prec [1, .5] -> AP 0.5; dog: only difficult GT -> no AP
    assert res["AP"] == {"cat": 50.0, "dog": None} and res["mAP"] == 50.0 and res["use_07_metric"] is False
    write(dets / "horse.txt", "im1 0.5 1 1 2 2\n")
    code, _, err = run(argv, capsys)
    assert code == 2 and "horse.txt: unknown class 'horse'" in err


def test_voc_ap_from_coco_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = coco_gt(tmp_path)
    dets = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.9},
            {"image_id": 2, "category_id": 5, "bbox": [0, 0, 5, 5], "score": 0.9}]  # fmt: skip
    write(tmp_path / "d.json", json.dumps(dets))
    out_json = tmp_path / "o.json"
    argv = ["score", "voc-ap", "--gt", str(gt), "--detections", str(tmp_path / "d.json"), "--use-07-metric", "true",
            "--json", str(out_json)]  # fmt: skip
    code, _, err = run(argv, capsys)
    assert code == 0, err
    res = json.loads(out_json.read_text())
    assert res["AP"] == {"cat": pytest.approx(100.0), "dog": 0.0} and res["use_07_metric"] is True
