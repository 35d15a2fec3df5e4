"""Training-side helpers of the WSSS methods: IRN's random resize/flip/crop and the flip-fused forward."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from lowlabel.methods.wsss.common import flip_fused_forward, random_scale_flip_crop
from lowlabel.models.seg_nets import CAMOutput
from lowlabel.structures import IGNORE_INDEX


def numbered(h: int, w: int) -> tuple[Tensor, Tensor]:
    """An image whose every pixel is unique and non-zero (so padding is recognisable), and a class-id mask."""
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    image = torch.stack([100.0 * ys + xs + 1, -(100.0 * ys + xs + 1), torch.full((h, w), 7.0)])  # (3, H, W)
    mask = (ys // 2 + xs) % 5  # (H, W) class ids 0..4
    return image, mask


def placed_window(out: Tensor, valid: Tensor) -> tuple[Tensor, tuple[int, int]]:
    """The content of the valid rectangle and its top-left corner; checks the valid region is one rectangle."""
    rows = torch.nonzero(valid.any(1)).flatten()
    cols = torch.nonzero(valid.any(0)).flatten()
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    assert valid[top:bottom, left:right].eq(1).all() and valid.sum() == (bottom - top) * (right - left)
    return out[..., top:bottom, left:right], (top, left)


def test_smaller_image_is_placed_whole_with_zero_image_and_255_mask_padding() -> None:
    image, mask = numbered(10, 12)
    flips, corners = set(), set()
    for seed in range(24):
        torch.manual_seed(seed)
        # long side fixed at 12: no resize; crop 16 > 10 x 12, so the whole image is placed at a random offset
        out, out_mask, valid = random_scale_flip_crop(image, mask, crop=16, long_side=(12, 12))
        assert out.shape == (3, 16, 16) and out_mask.shape == (16, 16) and valid.shape == (16, 16)
        assert valid.sum() == 10 * 12  # the placed image area
        assert (out_mask == IGNORE_INDEX).sum() == 16 * 16 - 10 * 12 and (out_mask[valid == 0] == 255).all()
        assert (out[:, valid == 0] == 0).all()  # normalised image: 0 is the mean colour
        window, corner = placed_window(out, valid)
        mask_window, _ = placed_window(out_mask, valid)
        flipped = torch.equal(window, image.flip(-1))
        assert flipped or torch.equal(window, image)
        assert torch.equal(mask_window, mask.flip(-1) if flipped else mask)  # mask moves with the image
        assert 0 <= corner[0] <= 6 and 0 <= corner[1] <= 4
        flips.add(flipped)
        corners.add(corner)
    assert flips == {True, False} and len(corners) > 5  # both outcomes and several offsets occur


def test_larger_image_is_resized_then_cropped_without_padding() -> None:
    image, mask = numbered(20, 40)
    torch.manual_seed(3)
    # long side 40 -> 80: exactly x2, so the nearest-resized mask is every id repeated 2 x 2
    out, out_mask, valid = random_scale_flip_crop(image, mask, crop=32, long_side=(80, 80))
    assert valid.sum() == 32 * 32 and (out_mask != IGNORE_INDEX).all()
    big = mask.repeat_interleave(2, 0).repeat_interleave(2, 1)  # (40, 80)
    windows = [big[t : t + 32, s : s + 32] for t in range(9) for s in range(49)]
    windows += [big.flip(-1)[t : t + 32, s : s + 32] for t in range(9) for s in range(49)]
    assert any(torch.equal(out_mask, w) for w in windows)
    out_none, none_mask, valid_none = random_scale_flip_crop(image, None, crop=32, long_side=(80, 80))
    assert none_mask is None and out_none.shape == (3, 32, 32) and valid_none.sum() == 32 * 32


@pytest.mark.parametrize("seed", range(6))
def test_random_long_side_sets_the_placed_size(seed: int) -> None:
    image, mask = numbered(10, 12)
    torch.manual_seed(seed)
    _, _, valid = random_scale_flip_crop(image, mask, crop=32, long_side=(16, 24))
    window, _ = placed_window(valid, valid)
    h, w = window.shape
    assert 16 <= w <= 24 and h == round(10 * w / 12)  # long side drawn in the range, aspect ratio kept


class Ramp(nn.Module):
    """A model that is not mirror-symmetric: ``cam = x[:, :2] * col``, ``x4 = x[:, 2:] * col**2``."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[torch.Size] = []

    def forward(self, x: Tensor) -> CAMOutput:
        self.inputs.append(x.shape)
        col = torch.arange(x.shape[-1], dtype=x.dtype)  # (W,)
        return CAMOutput(cam=x[:, :2] * col, x4=x[:, 2:] * col**2, hier=None)


def test_flip_fused_forward_sums_the_mirrored_outputs() -> None:
    torch.manual_seed(0)
    image = torch.randn(3, 5, 4)
    model = Ramp()
    out = flip_fused_forward(model, image, 1.0, True)
    assert model.inputs == [torch.Size([2, 3, 5, 4])]  # the image and its mirror in one batch
    # cam: x * col + flip(flip(x) * col) = x * (col + col reversed) = x * (W - 1)
    torch.testing.assert_close(out.cam, 3 * image[None, :2])
    # x4: col**2 + reversed = [0, 1, 4, 9] + [9, 4, 1, 0]
    torch.testing.assert_close(out.x4, image[None, 2:] * torch.tensor([9.0, 5.0, 5.0, 9.0]))
    assert out.hier is None
    single = flip_fused_forward(model, image, 1.0, False)
    assert model.inputs[-1] == torch.Size([1, 3, 5, 4])
    torch.testing.assert_close(single.cam, image[None, :2] * torch.arange(4.0))


def test_flip_fused_forward_rescales_first() -> None:
    model = Ramp()
    out = flip_fused_forward(model, torch.full((3, 8, 12), 2.0), 0.5, True)
    assert model.inputs == [torch.Size([2, 3, 4, 6])]
    torch.testing.assert_close(out.cam, torch.full((1, 2, 4, 6), 2.0 * 5))  # constant image: 2 * (W' - 1)
