"""Universum loss: mean of the masked feature elements."""

from __future__ import annotations

import pytest
import torch

from lowlabel.losses.universum import universum_loss


def test_value_by_hand() -> None:
    # 2 channels, 2x2 map; T^u = pixels (0,0) and (1,1): values 1, 4 (ch 0) and 10, 40 (ch 1).
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[10.0, 20.0], [30.0, 40.0]]]])
    mask = torch.tensor([[[True, False], [False, True]]])
    assert universum_loss(f, mask).item() == pytest.approx((1 + 4 + 10 + 40) / 4)


def test_gradient_only_on_masked_pixels_and_empty_mask() -> None:
    f = torch.rand(2, 3, 4, 4, requires_grad=True)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[1, 2, 3] = True
    universum_loss(f, mask).backward()
    expected = torch.zeros_like(f)
    expected[1, :, 2, 3] = 1 / 3
    assert torch.allclose(f.grad, expected)
    empty = universum_loss(f, torch.zeros(2, 4, 4, dtype=torch.bool))
    assert empty.item() == 0.0 and empty.requires_grad


def test_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="mask shape"):
        universum_loss(torch.rand(1, 2, 4, 4), torch.ones(1, 3, 3, dtype=torch.bool))
