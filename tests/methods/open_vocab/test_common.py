"""methods/open_vocab/common.py: letterboxing and box crops, the zero-shot numbers on hand-made scores, and the
whole zero-shot pipeline (files, crops, CLIP normalisation, scores, metrics) on a hand-made dataset whose answers are
derived below with a stand-in CLIP that embeds an image as its mean normalised colour."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lowlabel.errors import DataError
from lowlabel.methods.open_vocab.common import (
    COCOFilesConfig,
    ZeroShotScores,
    categories,
    crop_box,
    image_recall_at_k,
    instance_dataset,
    letterbox,
    zero_shot_metrics,
    zero_shot_scores,
)
from lowlabel.models.clip import CLIP_MEAN, CLIP_STD
from tests.methods.open_vocab.coco_fake import write_coco


def test_letterbox_keeps_the_whole_image_and_pads_with_the_mean() -> None:
    image = torch.full((3, 20, 40), 255, dtype=torch.uint8)  # white, twice as wide as high
    out = letterbox(image, 32)
    assert out.shape == (3, 32, 32)
    white = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    assert torch.allclose(out[:, 8:24, :], white.view(3, 1, 1).expand(3, 16, 32), atol=1e-5)  # 40 x 20 -> 32 x 16
    assert out[:, :8].eq(0).all() and out[:, 24:].eq(0).all()  # the mean colour, 0 after normalisation


def test_crop_box_scales_about_the_centre_and_clips() -> None:
    image = torch.arange(10 * 12).view(1, 10, 12).expand(3, 10, 12)
    assert crop_box(image, torch.tensor([2.0, 3.0, 6.0, 5.0])).shape == (3, 2, 4)
    assert torch.equal(crop_box(image, torch.tensor([2.0, 3.0, 6.0, 5.0]))[0, 0], torch.tensor([38, 39, 40, 41]))
    assert crop_box(image, torch.tensor([2.0, 3.0, 6.0, 5.0]), context=2.0).shape == (3, 4, 8)  # 0..8 x 2..6
    assert crop_box(image, torch.tensor([0.0, 0.0, 12.0, 10.0]), context=3.0).shape == (3, 10, 12)  # clipped
    assert crop_box(image, torch.tensor([5.0, 5.0, 5.0, 5.0])).shape == (3, 1, 1)  # an empty box: one pixel


def test_zero_shot_metrics_on_hand_made_scores() -> None:
    """Classes red, green, blue; blue is novel. Images A {red}, B {green, blue}, C {blue}.

    * AP red: ranking A .9 (+), C .65, B .3 -> 1. AP green: B .8 (+) first -> 1. AP blue: A .7 (-), C .6 (+),
      B .4 (+) -> 1/2 * 1/2 + 1/2 * 2/3 = 7/12. mAP = (1 + 1 + 7/12) / 3; base 1; novel 7/12.
    * top-1 on the single-label images A (red: right) and C (top is red .65: wrong) = 50 %.
    * regions (red, green, blue, blue) predicted (red, blue, blue, green): base 1/2, novel 1/2, all 2/4; the last
      blue crop among novel classes only is blue: novel-only 2/2.
    """
    scores = ZeroShotScores(
        image_ids=[1, 2, 3],
        image_scores=torch.tensor([[0.9, 0.1, 0.7], [0.3, 0.8, 0.4], [0.65, 0.2, 0.6]]),
        image_labels=torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 1]], dtype=torch.bool),
        region_scores=torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.2, 0.3], [0.0, 0.1, 0.5], [0.1, 0.6, 0.5]]),
        region_labels=torch.tensor([0, 1, 2, 2]))
    metrics, per_class = zero_shot_metrics(scores, torch.tensor([False, False, True]))
    assert metrics == pytest.approx({
        "image_mAP": 100 * (2 + 7 / 12) / 3, "image_mAP_base": 100.0, "image_mAP_novel": 100 * 7 / 12,
        "image_top1": 50.0, "region_acc": 50.0, "region_acc_base": 50.0, "region_acc_novel": 50.0,
        "region_acc_novel_only": 100.0})
    assert per_class["AP"] == pytest.approx([100.0, 100.0, 100 * 7 / 12])
    assert per_class["region_acc"] == pytest.approx([100.0, 0.0, 50.0])
    # recall@k: A's top-1 is red (1/1); B's top-2 is green, blue (2/2); C's top-1 is red (0/1)
    assert image_recall_at_k(scores).tolist() == pytest.approx([100.0, 100.0, 0.0])


def test_without_novel_classes_the_novel_keys_are_left_out() -> None:
    scores = ZeroShotScores(image_ids=[1], image_scores=torch.tensor([[0.2, 0.1]]),
                            image_labels=torch.tensor([[True, False]]), region_scores=torch.tensor([[0.2, 0.1]]),
                            region_labels=torch.tensor([0]))
    metrics, _ = zero_shot_metrics(scores, torch.tensor([False, False]))
    assert set(metrics) == {"image_mAP", "image_mAP_base", "image_top1", "region_acc", "region_acc_base"}


class MeanColour(nn.Module):
    """A stand-in CLIP: the embedding of an image is its mean normalised colour (R, G, B)."""

    def __init__(self) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.zeros(()))

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))  # (B, 3)


def test_zero_shot_pipeline_on_a_hand_made_dataset(tmp_path: Path) -> None:
    """Black images; classes red (1), green (2), blue (4, novel); class embeddings are the R, G, B axes, so a crop or
    image goes to its largest mean normalised channel. Normalised: a black pixel is (-1.79, -1.75, -1.48), pure red
    R = +1.93, pure green G = +2.07, pure blue B = +2.15.

    * A (32 x 32, a 16 x 16 red box, 1/4 of it): R = 1/4 * 1.93 - 3/4 * 1.79 = -0.86 > B = -1.48: red, right.
    * B: a green box, and a box labelled blue that holds green.
    * C (a 16 x 16 blue box): B = 1/4 * 2.15 - 3/4 * 1.48 = -0.57: blue, right.
    * D (an 8 x 8 green box, 1/16): G = 1/16 * 2.07 - 15/16 * 1.75 = -1.51 < B = -1.48: blue, wrong. Black is
      "bluest" after CLIP's normalisation; without it (raw colours) D would be right.
    image_top1 over A, C, D = 2/3. Crops hold only their box's colour: red, green, green (labelled blue: wrong),
    blue, green -> all 4/5, base 3/3, novel 1/2; among novel classes only the wrong one is blue too: 2/2.
    """
    scenes = {"val": [((32, 32), [(1, (8, 8, 16, 16))]),
                      ((32, 40), [(2, (4, 4, 12, 12)), (4, (20, 16, 12, 12), 2)]),
                      ((32, 32), [(4, (8, 8, 16, 16))]),
                      ((32, 32), [(2, (12, 12, 8, 8))])]}
    root = write_coco(tmp_path / "coco", scenes)
    cfg = COCOFilesConfig(root=str(root))
    dataset = instance_dataset(root, cfg, "val")
    cats = categories(dataset, cfg, root)
    assert cats.ids == [1, 2, 4] and cats.novel.tolist() == [False, False, True]
    scores = zero_shot_scores(MeanColour(), dataset, torch.eye(3), size=32, batch_size=3)  # batches cut across images
    assert scores.image_scores.shape == (4, 3) and scores.region_labels.tolist() == [0, 1, 2, 2, 1]
    metrics, _ = zero_shot_metrics(scores, cats.novel)
    assert metrics["image_top1"] == pytest.approx(200 / 3)
    assert metrics["region_acc"] == pytest.approx(80.0) and metrics["region_acc_base"] == pytest.approx(100.0)
    assert metrics["region_acc_novel"] == pytest.approx(50.0) and metrics["region_acc_novel_only"] == pytest.approx(100)


def test_categories_refuse_names_and_split_ids_the_annotations_lack(tmp_path: Path) -> None:
    root = write_coco(tmp_path / "coco")
    dataset = instance_dataset(root, COCOFilesConfig(root=str(root)), "val")
    renamed = categories(dataset, COCOFilesConfig(root=str(root), names={"red": "crimson"}), root)
    assert renamed.prompt_names == ["crimson", "green", "blue"] and renamed.names == ["red", "green", "blue"]
    with pytest.raises(DataError, match="renames 'purple', which is not a category"):
        categories(dataset, COCOFilesConfig(root=str(root), names={"purple": "violet"}), root)
    (root / "annotations" / "ovd_split.json").write_text('{"base": [1, 2], "novel": [4, 9]}')
    with pytest.raises(DataError, match="ovd_split.json: category id 9 is not in the annotations"):
        categories(dataset, COCOFilesConfig(root=str(root)), root)
    with pytest.raises(DataError, match="test2017: no such image folder"):
        instance_dataset(root, COCOFilesConfig(root=str(root)), "test")
