"""The source-only detector (``lowlabel train detector``): training, VOC mAP evaluation, the frozen checkpoint that
``cut``/``lgcl`` load through ``common.load_detector``, and one-line errors for a wrong detector."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from lowlabel.engine import fit, load_method_from_run
from lowlabel.engine.checkpoint import load_checkpoint
from lowlabel.errors import UserError
from lowlabel.methods.base import OptimConfig, TrainerConfig
from lowlabel.methods.cross_domain import cut, detector
from lowlabel.methods.cross_domain.common import (
    DetectionDataConfig,
    DetectorModelConfig,
    SplitFolders,
    detect,
    load_detector,
)
from lowlabel.models.detectors import RoISettings, RPNSettings
from lowlabel.models.weights import CHECKPOINT_FORMAT
from tests.methods.cross_domain.detection_fake import write_shapes_domains

TINY_MODEL = DetectorModelConfig(
    backbone="resnet_small", width=4,
    rpn=RPNSettings(anchor_sizes=(8.0, 16.0), aspect_ratios=(1.0,), pre_nms_top_n_train=200, post_nms_top_n_train=50,
                    pre_nms_top_n_test=100, post_nms_top_n_test=20, batch_size_per_image=32),
    roi=RoISettings(pool_size=4, batch_size_per_image=16),
)


def tiny_config(root: Path, **data: object) -> detector.DetectorConfig:
    return detector.DetectorConfig(
        data=DetectionDataConfig(root=str(root), num_fixed_samples=2, num_worst_samples=1, **data),  # type: ignore[arg-type]
        model=TINY_MODEL,
        optim=OptimConfig(name="sgd", lr=0.01, schedule="multistep", milestones=(1,), warmup_steps=1),
        trainer=TrainerConfig(max_steps=2, batch_size=2, eval_split="testA", log_every=1, accelerator="cpu"),
    )


@pytest.fixture
def trained(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> tuple[Path, Path]:
    """(domains folder, a detector run trained 2 steps on its trainA)."""
    tmp = tmp_path_factory.mktemp("det")
    root = write_shapes_domains(tmp / "domains", classes=("person", "car"))
    torch.manual_seed(0)
    fit(detector.build(tiny_config(root)), run_dir=tmp / "run", progress=False)
    return root, tmp / "run"


def test_two_step_fit_evaluates_voc_map_and_records_classes(trained: tuple[Path, Path]) -> None:
    root, run = trained
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["split"] == "testA" and metrics["step"] == 2
    assert 0 <= metrics["mAP"] <= 100 and metrics["use_07_metric"] == 0
    per_class = json.loads((run / "eval" / "testA" / "per_class.json").read_text())
    assert list(per_class["AP"]) == ["person", "car"]  # the COCO category-id order of trainA.json
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["method"] == "detector"
    assert ckpt["config"]["data"]["classes"] == ["person", "car"]  # filled in from the train split, for rebuilding
    assert set(ckpt["nets"]) == {"detector"}
    samples = sorted((run / "eval" / "testA" / "samples").glob("*.npz"))
    with np.load(samples[0]) as s:
        assert str(s["kind"]) == "detection" and list(s["class_names"]) == ["person", "car"]


def test_checkpoint_round_trip_through_load_detector(trained: tuple[Path, Path]) -> None:
    root, run = trained
    frozen, classes = load_detector(str(run))
    assert classes == ["person", "car"]
    assert frozen.source == str(run / "checkpoints" / ("best.ckpt" if (run / "checkpoints" / "best.ckpt").is_file()
                                                       else "last.ckpt"))
    assert len(frozen.sha256) == 64
    assert not frozen.module.training and not any(p.requires_grad for p in frozen.module.parameters())
    loaded = load_method_from_run(run, method_name="detector")
    images = [torch.rand(3, 32, 48), torch.rand(3, 40, 40)]
    for a, b in zip(detect(frozen.module, images, classes), detect(loaded.nets["detector"], images, classes)):
        torch.testing.assert_close(a.boxes, b.boxes)
        torch.testing.assert_close(a.scores, b.scores)
        assert torch.equal(a.labels, b.labels) and a.class_names == ("person", "car")
    frozen2, _ = load_detector(str(run / "checkpoints" / "last.ckpt"))  # the checkpoint file works as well
    assert type(frozen2.module) is type(frozen.module)
    # the translators take it as their frozen network
    method = cut.build(dataclasses.replace(cut.CONFIG(), detector=str(run), data=dataclasses.replace(
        cut.CONFIG().data, root=str(root))))
    assert set(method.frozen_networks()) == {"detector"} and method.detector()[1] == ["person", "car"]


class Oracle(nn.Module):
    """A stand-in detector that returns fixed boxes: a car where each image's car is, and a person box on every
    image with a score that falls with the image index (encoded in the image's pixel value)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, images: list[Tensor]) -> list[dict[str, Tensor]]:
        out = []
        for image in images:
            i = int(round(float(image.mean()) * 255 / 10))
            out.append({"boxes": torch.tensor([[2.0, 3.0, 14.0, 13.0], [20.0, 8.0, 30.0, 26.0]]),
                        "labels": torch.tensor([1, 2]),  # torchvision's 1..K: car, person
                        "scores": torch.tensor([0.9, 0.8 - 0.1 * i])})
        return out


def _constant_images(root: Path, n: int = 4) -> Path:
    """testA of 4 constant images (value 10 i), a car at (2, 3, 14, 13) on each, a person at (20, 8, 30, 26) on
    images 0 and 2."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    images, annotations = [], []
    for i in range(n):
        Image.fromarray(np.full((32, 48, 3), 10 * i, np.uint8)).save(root / "images" / f"{i}.png")
        images.append({"id": i + 1, "file_name": f"{i}.png", "width": 48, "height": 32})
        annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "bbox": [2, 3, 12, 10],
                            "area": 120, "iscrowd": 0})
        if i % 2 == 0:
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 2,
                                "bbox": [20, 8, 10, 18], "area": 180, "iscrowd": 0})
    categories = [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}]
    (root / "boxes.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                 "categories": categories}))
    return root


@pytest.mark.parametrize(("use_07", "person_ap"), [(False, 100 * (0.5 + 0.5 * 2 / 3)),
                                                   (True, 100 * (6 + 5 * 2 / 3) / 11)])
def test_evaluation_is_voc_map_of_the_scoring_suite(tmp_path: Path, use_07: bool, person_ap: float) -> None:
    """By hand: every car found (AP 100); person detections ranked on images 0, 1, 2, 3 hit, miss, hit, miss:
    precision 1 at recall 0.5 and 2/3 at recall 1 -> all-point AP 0.5 + 0.5 * 2/3, 11-point (6 + 5 * 2/3) / 11."""
    root = _constant_images(tmp_path / "d")
    split = SplitFolders(images=str(root / "images"), annotations=str(root / "boxes.json"))
    cfg = tiny_config(root, splits={"test": split}, classes=["car", "person"])
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=""), use_07_metric=use_07)
    method = detector.build(cfg)
    result = method.evaluate({"detector": Oracle()}, "test", tmp_path / "eval")
    assert result.metrics["AP/car"] == pytest.approx(100.0)
    assert result.metrics["AP/person"] == pytest.approx(person_ap)
    assert result.metrics["mAP"] == pytest.approx((100.0 + person_ap) / 2)
    assert result.metrics["use_07_metric"] == float(use_07) and result.monitor == "mAP"
    rows = [line.split(",") for line in (tmp_path / "eval" / "per_image.csv").read_text().splitlines()[1:]]
    assert {i: float(v) for i, v in rows} == {"0": 1.0, "1": 1.0, "2": 1.0, "3": 1.0}  # each GT box found


def test_crowd_and_difficult_boxes_are_neither_hit_nor_miss(tmp_path: Path) -> None:
    """COCO crowd regions: the person detection on image 1 lands on a crowd box (ignored, not a TP) and the crowd box
    on image 3 is never found (not a miss). By hand: TP, ignored, TP, FP -> person AP 100 (counted as ordinary
    boxes it would be TP, TP, TP, FP over 4 boxes: 75). Training drops the crowds; VOC difficult flags are read."""
    from lowlabel.data.unpaired import DetectionFolder
    from lowlabel.methods.cross_domain.common import DetectionSplit, TrainAugment

    root = _constant_images(tmp_path / "d")
    data = json.loads((root / "boxes.json").read_text())
    for image_id, bbox in ((2, [20, 8, 10, 18]), (4, [0, 20, 8, 8])):
        data["annotations"].append({"id": len(data["annotations"]) + 1, "image_id": image_id, "category_id": 2,
                                    "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 1})
    (root / "boxes.json").write_text(json.dumps(data))
    split = SplitFolders(images=str(root / "images"), annotations=str(root / "boxes.json"))
    cfg = tiny_config(root, splits={"test": split}, classes=["car", "person"])
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=""))
    result = detector.build(cfg).evaluate({"detector": Oracle()}, "test", tmp_path / "eval")
    assert result.metrics["AP/person"] == pytest.approx(100.0) and result.metrics["AP/car"] == pytest.approx(100.0)
    rows = [line.split(",") for line in (tmp_path / "eval" / "per_image.csv").read_text().splitlines()[1:]]
    assert {i: float(v) for i, v in rows}["3"] == 1.0  # the unfound crowd box is not a miss in the gallery either

    item = DetectionSplit(name="test", folders=split, classes=["car", "person"])[1]
    assert item["iscrowd"].tolist() == [False, True] and item["difficult"].tolist() == [False, True]
    trained_on = TrainAugment(flip=False)(item)
    assert trained_on["labels"].tolist() == [0] and len(trained_on["boxes"]) == 1

    voc = tmp_path / "voc"
    (voc / "images").mkdir(parents=True)
    (voc / "xml").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(voc / "images" / "a.jpg")
    objects = "".join(f"<object><name>car</name><difficult>{d}</difficult><bndbox><xmin>2</xmin><ymin>2</ymin>"
                      f"<xmax>9</xmax><ymax>9</ymax></bndbox></object>" for d in (0, 1))
    (voc / "xml" / "a.xml").write_text(f"<annotation><size><width>30</width><height>20</height></size>{objects}"
                                       "</annotation>")
    item = DetectionFolder(image_dir=voc / "images", annotations=voc / "xml")[0]
    assert item["difficult"].tolist() == [False, True] and item["iscrowd"].tolist() == [False, False]


def test_predict_writes_drawn_images_and_coco_results(trained: tuple[Path, Path], tmp_path: Path) -> None:
    root, run = trained
    loaded = load_method_from_run(run, method_name="detector")
    loaded.method.predict(loaded.nets, root / "testB", tmp_path / "pred")
    assert sorted(p.name for p in (tmp_path / "pred").glob("*.png")) == [f"testB_{i:06d}.png" for i in range(4)]
    results = json.loads((tmp_path / "pred" / "detections.json").read_text())
    for r in results:
        assert set(r) == {"image_id", "category_id", "bbox", "score", "file_name", "category_name"}
        assert r["category_name"] == ["person", "car"][r["category_id"] - 1] and 1 <= r["image_id"] <= 4


def test_translator_predict_writes_detections_in_the_detectors_format(trained: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    """CUT's predict with the frozen detector: the translations, and the detections before and after as COCO results
    lists in the detector's own predict format (same keys, same image ids for the same inputs)."""
    root, run = trained
    method = cut.build(dataclasses.replace(cut.CONFIG(), detector=str(run), data=dataclasses.replace(
        cut.CONFIG().data, root=str(root))))
    nets = {**method.networks(), **{k: f.module for k, f in method.frozen_networks().items()}}
    method.predict(nets, root / "testB", tmp_path / "pred")
    index = json.loads((tmp_path / "pred" / "translations.json").read_text())
    names = [f"testB_{i:06d}" for i in range(4)]
    assert [r["image_id"] for r in index] == [1, 2, 3, 4] and [r["translated"] for r in index] == [
        f"{n}.png" for n in names]
    assert {p.name for p in (tmp_path / "pred").glob("*.png")} == {
        f"{n}{tag}.png" for n in names for tag in ("", "_before", "_after")}
    loaded = load_method_from_run(run, method_name="detector")
    loaded.method.predict(loaded.nets, root / "testB", tmp_path / "det")
    own = json.loads((tmp_path / "det" / "detections.json").read_text())
    before = json.loads((tmp_path / "pred" / "detections_before.json").read_text())
    after = json.loads((tmp_path / "pred" / "detections_after.json").read_text())
    assert before == own  # the raw images through the same detector: the very same rows
    for r in after:
        assert set(r) == {"image_id", "category_id", "bbox", "score", "file_name", "category_name"}
        assert index[r["image_id"] - 1]["input"] == r["file_name"]


# ---------------------------------------------------------------- bad input


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_a_run_of_another_method_is_refused(tmp_path: Path) -> None:
    run = tmp_path / "cut-run"
    (run / "checkpoints").mkdir(parents=True)
    torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "method": "cut", "config": {}, "nets": {}},
               run / "checkpoints" / "last.ckpt")
    with pytest.raises(UserError) as err:
        load_detector(str(run))
    assert _one_line(err) == (f"{run / 'checkpoints' / 'last.ckpt'}: a run of 'cut', not a detector run "
                              "(train one with `lowlabel train detector`)")


def test_a_missing_detector_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        load_detector(str(tmp_path / "nope"))
    assert _one_line(err).startswith(f"{tmp_path / 'nope'}: no such detector run")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as err:
        load_detector(str(tmp_path / "empty"))
    assert str(tmp_path / "empty") in _one_line(err)


def test_a_detector_without_recorded_classes_is_refused(trained: tuple[Path, Path], tmp_path: Path) -> None:
    _, run = trained
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    ckpt["config"]["data"]["classes"] = []
    torch.save(ckpt, tmp_path / "no-classes.ckpt")
    with pytest.raises(UserError) as err:
        load_detector(str(tmp_path / "no-classes.ckpt"))
    assert _one_line(err).endswith("the detector run records no class names (data.classes)")


def test_a_detector_of_other_classes_than_the_target_data(trained: tuple[Path, Path], tmp_path: Path) -> None:
    """A person/car detector on a target test split boxed for car and bus: refused when the translator loads it,
    before training, in one line naming the annotation file and the detector."""
    _, run = trained
    other = write_shapes_domains(tmp_path / "other", classes=("car", "bus"))
    cfg = cut.CONFIG()
    cfg = dataclasses.replace(cfg, detector=str(run), data=dataclasses.replace(cfg.data, root=str(other)))
    method = cut.build(cfg)
    with pytest.raises(UserError) as err:
        method.frozen_networks()
    text = _one_line(err)
    assert text.startswith(f"{other / 'annotations' / 'testB.json'}: has no class 'person' of the detector ")
    assert str(run) in text
    # the detector's own evaluation on such a split fails the same way
    loaded = load_method_from_run(run, method_name="detector")
    extra = SplitFolders(images=str(other / "testB"), annotations=str(other / "annotations" / "testB.json"))
    config = loaded.method.config
    method = detector.build(dataclasses.replace(config, data=dataclasses.replace(config.data, splits={"extra": extra})))
    with pytest.raises(UserError) as err:
        method.evaluate(loaded.nets, "extra", tmp_path / "e")
    assert _one_line(err).startswith(f"{other / 'annotations' / 'testB.json'}: has no class 'person' of data.classes")
