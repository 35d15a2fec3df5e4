"""The two ImageNet normalisations: the v2 pipeline (WSOL) and ``normalize_image`` (WSSS) agree up to rounding."""

from __future__ import annotations

import torch

from lowlabel.data.transforms import normalize, normalize_image
from lowlabel.structures import IMAGENET_MEAN, IMAGENET_STD


def test_normalize_image_is_x_over_255_minus_mean_over_std_exactly() -> None:
    x = torch.tensor([[[0, 255]], [[128, 64]], [[1, 254]]], dtype=torch.uint8)  # (3, 1, 2)
    out = normalize_image(x)
    for c in range(3):
        for j in range(2):
            expected = (torch.tensor(float(x[c, 0, j])) / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
            assert out[c, 0, j].item() == expected.item()
    assert out.dtype == torch.float32 and out.shape == (3, 1, 2)


def test_the_v2_pipeline_differs_only_by_float_rounding() -> None:
    x = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a, b = normalize()(x), normalize_image(x)
    assert (a - b).abs().max() < 2e-6
