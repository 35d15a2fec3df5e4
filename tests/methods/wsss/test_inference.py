"""WSSS inference helpers: the top box of a class in a label map, and CorLoc over those boxes (hand cases)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lowlabel.methods.wsss.inference import CorLocAccumulator, top_box


def test_top_box_is_the_largest_8_connected_region_with_inclusive_corners() -> None:
    ids = np.zeros((12, 16), np.uint8)
    ids[1:3, 1:4] = 2  # blob A: 6 pixels
    ids[1:3, 4:8] = 1  # another class touching A: not merged with it
    for i in range(3, 11):
        ids[i, i + 4] = 2  # blob B: a diagonal chain, one 8-connected region of 8 pixels
    ids[11, 0] = 2  # a single pixel
    ys, xs = np.mgrid[0:12, 0:16]
    score = (100 * ys + xs).astype(np.float64)
    box, mean = top_box(ids, 2, score)
    assert box == [7.0, 3.0, 14.0, 10.0]  # x0, y0, x1, y1 of (3, 7) .. (10, 14), inclusive
    assert mean == pytest.approx(101 * 6.5 + 4)  # mean of 100 * i + (i + 4) over i = 3..10
    assert top_box(ids, 1, score) == (
        [4.0, 1.0, 7.0, 2.0],
        pytest.approx(np.mean([105, 106, 107, 104, 205, 206, 207, 204])),
    )
    assert top_box(ids, 3, score) is None
    one = np.zeros((5, 5), np.uint8)
    one[4, 2] = 1
    assert top_box(one, 1, np.ones((5, 5))) == ([2.0, 4.0, 2.0, 4.0], 1.0)  # a single pixel: x0 == x1


def test_corloc_accumulator_hand_case() -> None:
    """cat: hit (exact box), miss (IoU exactly 0.5, not > 0.5); dog: miss, hit (IoU 25/30); bird: in the GT of an
    image whose labels omit it, so no box: miss. CorLoc = mean(50, 50, 0)."""
    names = ["cat", "dog", "bird"]
    acc = CorLocAccumulator(names)
    scores = np.ones((4, 20, 20))

    def labels(*present: int) -> torch.Tensor:
        vec = torch.zeros(3)
        vec[list(present)] = 1.0
        return vec

    i1 = np.zeros((20, 20), np.uint8)
    i1[2:7, 2:7] = 1  # cat, the exact GT box [2, 2, 6, 6]
    i1[18, 18] = 1  # a smaller cat region: not the top box
    i1[0:4, 14:20] = 2  # dog, far from its GT
    acc.add("i1", i1, scores, labels(0, 1), torch.tensor([[2.0, 2, 6, 6], [10, 10, 15, 15]]), torch.tensor([0, 1]))
    i2 = np.zeros((20, 20), np.uint8)
    i2[0:5, 0:10] = 1  # cat [0, 0, 9, 4]: 50 px of the 100 px GT [0, 0, 9, 9] -> IoU 0.5
    acc.add("i2", i2, scores, labels(0), np.array([[0.0, 0, 9, 9], [12, 12, 14, 14]]), np.array([0, 2]))
    i3 = np.zeros((20, 20), np.uint8)
    i3[:5, :5] = 2
    acc.add("i3", i3, scores, labels(1), None, None)  # no GT boxes: not scored
    i4 = np.zeros((20, 20), np.uint8)
    i4[0:5, 0:6] = 2  # dog [0, 0, 5, 4] (30 px) vs GT [0, 0, 4, 4] (25 px): IoU 25/30
    i4[10:15, 10:15] = 1  # cat without a cat GT box in i4: ignored
    acc.add("i4", i4, scores, labels(0, 1), torch.tensor([[0.0, 0, 4, 4]]), torch.tensor([1]))
    res = acc.compute()
    assert res["per_class"] == {"cat": 50.0, "dog": 50.0, "bird": 0.0}
    assert res["CorLoc"] == pytest.approx(100 / 3)
    assert CorLocAccumulator(names).compute() == {}  # nothing with GT boxes: no CorLoc
