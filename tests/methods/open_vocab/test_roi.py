"""The C4 RoI head (``lowlabel.methods.open_vocab.roi``): RoI features of a whole-image box are the model's own image
embedding on the grid it was built for, and boxes follow the letterbox."""

from __future__ import annotations

from pathlib import Path

import torch

from lowlabel.methods.open_vocab import roi
from lowlabel.methods.open_vocab.common import ZeroShotScores
from lowlabel.models.clip import build_clip, c4_parts
from tests.models.test_clip import small_arch


def test_roi_features_of_the_whole_image_are_the_image_embedding(tmp_path: Path, one_thread: None) -> None:
    torch.manual_seed(0)
    model = build_clip(arch=small_arch(tmp_path / "small.json"), image_size=64).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        res4 = c4_parts(model).trunk(x)  # (3, C4, 4, 4)
        whole = roi.whole_boxes(3, 64, x.device)  # [0, 0, 64, 64] each: res4's 4 x 4 cells, one sample per bin
        rois = roi.region_embeddings(model, res4, whole, pool_size=roi.default_pool_size(model))
        own = model.encode_image(x)
    assert roi.default_pool_size(model) == 4 and torch.allclose(rois, own, atol=1e-5, rtol=1e-4)


def test_letterbox_boxes_follow_the_letterbox() -> None:
    # a 40 x 48 image in a 64 canvas: scale 4/3 -> 53 x 64 (53.3 rounded), 5 rows of border above
    box = torch.tensor([[0.0, 0.0, 48.0, 40.0], [12.0, 10.0, 24.0, 20.0]])
    out = roi.letterbox_boxes(box, (40, 48), 64)
    assert torch.allclose(out[0], torch.tensor([0.0, 5.0, 64.0, 58.0]))
    assert torch.allclose(out[1], torch.tensor([16.0, 5 + 10 * 53 / 40, 32.0, 5 + 20 * 53 / 40]))
    assert torch.equal(roi.flip_boxes(out[1:], 64), torch.tensor([[32.0, out[1, 1], 48.0, out[1, 3]]]))


def test_per_image_region_accuracy() -> None:
    # image 1: boxes of class 0 (right) and 1 (wrong); image 2: none; image 3: one of class 1 (right)
    scores = ZeroShotScores(image_ids=[1, 2, 3], image_scores=torch.zeros(3, 2), image_labels=torch.zeros(3, 2).bool(),
                            region_scores=torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]]),
                            region_labels=torch.tensor([0, 1, 1]))
    got = roi.per_image_region_accuracy(scores, [2, 0, 1])
    assert got[0] == 50.0 and got[1] != got[1] and got[2] == 100.0
