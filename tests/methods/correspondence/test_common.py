"""Propagation evaluation glue: ContrastCorr's resize rule, LAB input, and a DAVIS-layout run end to end (an encoder
that sees the objects perfectly scores J&F 100; the raw-pixel baseline runs on ShapesWorld davis/)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lowlabel.data.davis import DAVIS2017
from lowlabel.data.io import load_index_png, save_palette_png
from lowlabel.methods.correspondence.common import (
    channel_dropout,
    crop_boxes,
    encoder_input,
    evaluate_davis,
    pixel_encoder,
    propagation_size,
    rgb_to_lab,
    track_box,
)
from lowlabel.models.propagation import PAPER, PropagationConfig


def test_propagation_size_is_the_official_rule() -> None:
    assert propagation_size(480, 854, 560) == (560, 960)  # DAVIS 480p: 996 floored to 15 x 64
    assert propagation_size(854, 480, 560) == (960, 560)
    assert propagation_size(96, 128, 0) == (96, 128)


def test_rgb_to_lab_is_opencv_8bit_lab_centred() -> None:
    white = np.full((1, 1, 3), 255, np.uint8)
    black = np.zeros((1, 1, 3), np.uint8)
    torch.testing.assert_close(rgb_to_lab(white)[:, 0, 0], torch.tensor([127.0, 0.0, 0.0]) / 128.0)  # L 255
    torch.testing.assert_close(rgb_to_lab(black)[:, 0, 0], torch.tensor([-128.0, 0.0, 0.0]) / 128.0)


def write_davis(root: Path, frames: int = 5) -> Path:
    """Two sequences of 16 x 24 frames: a red square (object 1) and a blue one (object 2) moving right on grey."""
    for seq, speed in (("a", 1), ("b", 2)):
        for t in range(frames):
            image = np.full((16, 24, 3), 128, np.uint8)
            mask = np.zeros((16, 24), np.uint8)
            image[4:12, 2 + speed * t:10 + speed * t] = (220, 30, 30)
            mask[4:12, 2 + speed * t:10 + speed * t] = 1
            image[0:4, 12 + speed * t:16 + speed * t] = (30, 30, 220)
            mask[0:4, 12 + speed * t:16 + speed * t] = 2
            (root / "JPEGImages" / "480p" / seq).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(root / "JPEGImages" / "480p" / seq / f"{t:05d}.jpg", quality=100)
            save_palette_png(root / "Annotations" / "480p" / seq / f"{t:05d}.png", mask)
    (root / "ImageSets" / "2017").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("a\nb\n")
    (root / "ImageSets" / "2017" / "train.txt").write_text("b\n")
    return root


def test_an_encoder_that_sees_the_objects_scores_100(tmp_path: Path) -> None:
    """Features = the GT ids of each frame (read back from the annotation files), one-hot at stride 1: each target
    pixel's best reference pixels have its own id, so the propagated masks are the GT masks."""
    root = write_davis(tmp_path / "davis")
    dataset = DAVIS2017(root=root, split="val")
    masks = {seq: [load_index_png(p) for p in sorted((root / "Annotations" / "480p" / seq).glob("*.png"))]
             for seq in ("a", "b")}
    order = iter([(seq, t) for seq in ("a", "b") for t in range(5)])

    def encode(_frame: torch.Tensor) -> torch.Tensor:
        seq, t = next(order)
        return F.one_hot(torch.from_numpy(masks[seq][t].copy()).long(), 3).permute(2, 0, 1).float() * 4.0

    result = evaluate_davis(encode, dataset, tmp_path / "out", cfg=PropagationConfig(topk=5, mutual=False), stride=1,
                            samples_dir=tmp_path / "eval", num_samples=1)
    assert result["metrics"]["J&F-Mean"] == pytest.approx(100.0)
    assert sorted(result["per_sequence"]) == ["a_1", "a_2", "b_1", "b_2"]
    written = load_index_png(tmp_path / "out" / "b" / "00003.png")
    assert np.array_equal(written, masks["b"][3])
    from lowlabel.samples import load_sample, read_per_image

    assert read_per_image(tmp_path / "eval" / "per_image.csv") == {"a": 100.0, "b": 100.0}
    strip = load_sample(tmp_path / "eval" / "samples" / "a.npz")  # the first sequence (the worst is b, a tie)
    assert strip["kind"] == "propagation" and strip["frames"].shape == (5, 16, 24, 3)
    assert np.array_equal(strip["pred"], strip["gt"]) and list(strip["frame_names"]) == [f"{t:05d}" for t in range(5)]
    from lowlabel.report.panels import draw_panel

    panel = draw_panel(strip)
    assert [t.title for t in panel.tiles][-1] == "ground truth (last frame)" and len(panel.tiles) == 6


def test_the_raw_pixel_baseline_runs_and_is_below_perfect(tmp_path: Path) -> None:
    root = write_davis(tmp_path / "davis")
    result = evaluate_davis(pixel_encoder(4), DAVIS2017(root=root, split="val"), tmp_path / "out", cfg=PAPER,
                            stride=4)
    assert 0.0 < result["metrics"]["J&F-Mean"] < 100.0
    assert len(list((tmp_path / "out" / "a").glob("*.png"))) == 5


def test_channel_dropout_drops_the_same_channels_in_both_frames_and_rescales() -> None:
    gen = torch.Generator().manual_seed(0)
    ref, tgt = torch.ones(2, 3, 4, 4), torch.full((2, 3, 4, 4), 2.0)
    counts = {0: 0, 1: 0, 2: 0}
    for _ in range(3000):
        a, b, dropped = channel_dropout(ref, tgt, generator=gen)
        counts[len(dropped)] += 1
        for c in range(3):
            if c in dropped:
                assert float(a[:, c].abs().max()) == 0.0 and float(b[:, c].abs().max()) == 0.0
            else:
                scale = 3.0 / (3 - len(dropped))
                assert torch.all(a[:, c] == scale) and torch.all(b[:, c] == 2.0 * scale)
    assert abs(counts[0] / 3000 - 0.3) < 0.03 and abs(counts[1] / 3000 - 0.35) < 0.03  # 0.3 / 0.35 / 0.35
    assert torch.all(ref == 1.0)  # inputs untouched


def test_encoder_input_maps_lab_to_imagenet_normalised_unit_range() -> None:
    x = encoder_input(torch.full((1, 3, 1, 1), -1.0))  # (x + 1) / 2 = 0
    torch.testing.assert_close(x.flatten(), -torch.tensor([0.485, 0.456, 0.406]) / torch.tensor([0.229, 0.224, 0.225]))


def test_track_box_centres_the_patch_where_the_reference_went() -> None:
    """Reference cells (a 2 x 2 patch) match target cells (row 3-4, col 5-6) of a 6 x 8 map exactly: the box is
    centred on those cells' centres (x 6.0, y 4.0) and is 2 x 2; near the border it is shifted inside."""
    tgt_cells = [3 * 8 + 5, 3 * 8 + 6, 4 * 8 + 5, 4 * 8 + 6]
    logits = torch.full((1, 4, 48), -1e4)
    for i, j in enumerate(tgt_cells):
        logits[0, i, j] = 0.0
    torch.testing.assert_close(track_box(logits, (6, 8), (2, 2)), torch.tensor([[5.0, 3.0, 7.0, 5.0]]))
    corner = torch.full((1, 4, 48), -1e4)
    corner[0, :, 0] = 0.0  # everything went to cell (0, 0): the 3 x 3 box starts at the corner
    torch.testing.assert_close(track_box(corner, (6, 8), (3, 3)), torch.tensor([[0.0, 0.0, 3.0, 3.0]]))


def test_crop_boxes_takes_the_cells_of_an_aligned_box_and_interpolates_between() -> None:
    feats = torch.arange(48, dtype=torch.float32).view(1, 1, 6, 8)
    crop = crop_boxes(feats, torch.tensor([[5.0, 3.0, 7.0, 5.0]]), (2, 2))
    torch.testing.assert_close(crop[0, 0], feats[0, 0, 3:5, 5:7])
    half = crop_boxes(feats, torch.tensor([[5.5, 3.0, 7.5, 5.0]]), (2, 2))  # half a cell to the right
    torch.testing.assert_close(half[0, 0], feats[0, 0, 3:5, 5:7] + 0.5)
    grad_feats = feats.clone().requires_grad_(True)  # differentiable: the gradient reaches the cropped cells only
    crop_boxes(grad_feats, torch.tensor([[5.0, 3.0, 7.0, 5.0]]), (2, 2)).sum().backward()
    assert float(grad_feats.grad[0, 0, 3:5, 5:7].sum()) == 4.0 and float(grad_feats.grad.sum()) == 4.0


def test_rgb_to_lab_agrees_with_scikit_image() -> None:
    """OpenCV's 8-bit LAB is CIELAB (D65) scaled: L * 255 / 100 and a, b + 128, rounded; scikit-image's rgb2lab is the
    float reference. On a random image OpenCV's fixed-point conversion is off by 0.26 on average and 1.03 at most
    (measured), i.e. within one 8-bit step."""
    from skimage.color import rgb2lab

    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ours = (rgb_to_lab(rgb) * 128.0 + 128.0).permute(1, 2, 0).numpy()
    ref = rgb2lab(rgb)
    expected = np.stack([ref[..., 0] * 255.0 / 100.0, ref[..., 1] + 128.0, ref[..., 2] + 128.0], axis=-1)
    error = np.abs(ours - expected)
    assert error.max() <= 1.5 and error.mean() <= 0.4
