"""CAM post-processing (wsolevaluation protocol): class selection, normalisation, resizing."""

from __future__ import annotations

import numpy as np
import torch

from lowlabel.models.cam_heads import minmax_per_map, scoremaps_from_cams, select_class_cams


def test_select_class_cams() -> None:
    cams = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 2, 2)
    got = select_class_cams(cams, torch.tensor([2, 0]))
    assert torch.equal(got[0], cams[0, 2]) and torch.equal(got[1], cams[1, 0])


def test_minmax_by_hand() -> None:
    m = torch.tensor([[[2.0, 4.0], [6.0, 10.0]]])
    assert torch.allclose(minmax_per_map(m), torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))


def test_scoremaps_range_size_peak_and_degenerate_maps() -> None:
    cam = torch.zeros(3, 7, 7)
    cam[0, 5, 1] = 3.0  # a single peak at row 5, col 1
    cam[1] = 2.5  # constant -> NaN after min-max -> 0
    cam[2, 0, 0] = float("nan")
    maps = scoremaps_from_cams(cam, size=224)
    assert maps.shape == (3, 224, 224) and maps.dtype == np.float32
    assert maps[0].min() == 0.0 and maps[0].max() == 1.0
    r, c = np.unravel_index(maps[0].argmax(), (224, 224))
    assert 5 * 32 <= r < 6 * 32 and 1 * 32 <= c < 2 * 32  # the peak stays in its source cell
    assert not maps[1].any() and not maps[2].any()
    assert scoremaps_from_cams(cam[:1], size=(20, 30)).shape == (1, 20, 30)
