"""SIPE's tensor pieces against naive loops and hand-derived cases."""

from __future__ import annotations

import math

import pytest
import torch

from lowlabel.losses import sipe as L


def naive_structure_iou(cams: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Eq. 3-4 with explicit loops over pixels i, j and classes k (the official formula, written plainly)."""
    b, k1, h, w = cams.shape
    n = h * w
    out = torch.zeros(b, k1, n, dtype=torch.float64)
    for bi in range(b):
        f = feats[bi].reshape(feats.shape[1], n).double()
        f = f / (f.norm(dim=0, keepdim=True) + 1e-5)
        m = cams[bi].reshape(k1, n).double()
        for i in range(n):
            s = [max(0.0, float(f[:, i] @ f[:, j])) for j in range(n)]
            for k in range(k1):
                inter = sum(s[j] * float(m[k, j]) for j in range(n))
                union = sum(s) + float(m[k].sum()) - inter
                out[bi, k, i] = inter / union
    return out.reshape(b, k1, h, w)


def test_structure_iou_matches_naive_loop() -> None:
    g = torch.Generator().manual_seed(0)
    cams = torch.rand(2, 3, 3, 4, generator=g)
    feats = torch.randn(2, 5, 3, 4, generator=g)
    got = L.structure_iou(cams, feats, chunk_size=5)  # chunks of 5 rows over N = 12: 5 + 5 + 2
    torch.testing.assert_close(got.double(), naive_structure_iou(cams, feats), rtol=1e-5, atol=1e-6)


def test_structure_iou_chunking_does_not_change_values() -> None:
    g = torch.Generator().manual_seed(1)
    cams, feats = torch.rand(1, 4, 8, 8, generator=g), torch.randn(1, 16, 8, 8, generator=g)
    torch.testing.assert_close(L.structure_iou(cams, feats, chunk_size=7), L.structure_iou(cams, feats, chunk_size=64))


def test_seeds_background_iou_is_halved() -> None:
    # Two pixels with identical features, so S = [[1, 1], [1, 1]] and sum_j S_ij = 2.
    # Background map (1, 1): inter = 2, union = 2 + 2 - 2 = 2, IoU_bg = 1 -> x 0.5 = 0.5.
    # Class map (1, 0.5): inter = 1.5, union = 2 + 1.5 - 1.5 = 2, IoU_fg = 0.75 > 0.5 -> class 1 wins.
    cams = torch.tensor([[1.0, 1.0], [1.0, 0.5]]).view(1, 2, 1, 2)
    feats = torch.ones(1, 3, 1, 2)
    valid = torch.ones(1, 2, 1, 1)
    seeds = L.structure_seeds(cams, feats, valid, bg_iou_weight=0.5)
    assert seeds[0, :, 0].tolist() == [[0.0, 0.0], [1.0, 1.0]]
    # Without the halving the background (IoU 1) wins everywhere.
    seeds = L.structure_seeds(cams, feats, valid, bg_iou_weight=1.0)
    assert seeds[0, :, 0].tolist() == [[1.0, 1.0], [0.0, 0.0]]


def test_seeds_are_masked_by_valid() -> None:
    cams = torch.tensor([[1.0, 1.0], [1.0, 0.5]]).view(1, 2, 1, 2)
    valid = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)  # class 1 absent
    seeds = L.structure_seeds(cams, torch.ones(1, 3, 1, 2), valid)
    assert seeds.sum() == 0  # the argmax says class 1 everywhere, and class 1 is absent


def two_cluster_features() -> torch.Tensor:
    """(1, 2, 2, 4) features: left two columns = (1, 0), right two columns = (0, 3)."""
    f = torch.zeros(1, 2, 2, 4)
    f[0, 0, :, :2] = 1.0
    f[0, 1, :, 2:] = 3.0
    return f


def test_prototypes_and_iscam_on_two_clusters() -> None:
    feats = two_cluster_features()
    seeds = torch.zeros(1, 3, 2, 4)  # channels: bg, class 1, class 2 (absent)
    seeds[0, 1, 0, 0] = 1.0  # one seed pixel of class 1 in the left cluster
    seeds[0, 0, :, 3] = 1.0  # two background seed pixels in the right cluster
    protos = L.prototypes(seeds, feats)
    # Spatial mean over N = 8 pixels: class 1 = (1, 0) / 8; background = 2 * (0, 3) / 8; class 2 = 0.
    torch.testing.assert_close(protos[0], torch.tensor([[0.0, 0.75], [0.125, 0.0], [0.0, 0.0]]))
    cam = L.is_cam(protos, feats)
    left = torch.zeros(2, 4)
    left[:, :2] = 1.0
    torch.testing.assert_close(cam[0, 1], left)  # cos = 1 on the whole left cluster, 0 on the right
    torch.testing.assert_close(cam[0, 0], 1.0 - left)
    torch.testing.assert_close(cam[0, 2], torch.zeros(2, 4))  # absent class: zero prototype -> zero map


def test_absent_classes_get_zero_prototypes() -> None:
    g = torch.Generator().manual_seed(2)
    cams, feats = torch.rand(2, 4, 5, 5, generator=g), torch.randn(2, 6, 5, 5, generator=g)
    valid = torch.ones(2, 4, 1, 1)
    valid[0, 2] = 0.0
    valid[1, 1] = 0.0
    valid[1, 3] = 0.0
    protos = L.prototypes(L.structure_seeds(cams * valid, feats, valid), feats)
    assert protos[0, 2].abs().sum() == 0 and protos[1, 1].abs().sum() == 0 and protos[1, 3].abs().sum() == 0
    assert torch.isfinite(L.is_cam(protos, feats)).all()


def test_gsc_loss_hand_case() -> None:
    # One image, one channel, 2 pixels. IS = (0.5, 1.0), max 1 -> IS / (1 + 1e-5) ~ (0.5, 1.0).
    # M = (0.0, 0.5): |0 - 0.5| + |0.5 - 1.0| = 1.0, mean over 2 entries = 0.5.
    m = torch.tensor([0.0, 0.5]).view(1, 1, 1, 2)
    iscam = torch.tensor([0.5, 1.0]).view(1, 1, 1, 2)
    expected = (0.5 / (1 + 1e-5) + (1.0 / (1 + 1e-5) - 0.5)) / 2
    assert math.isclose(float(L.gsc_loss(m, iscam)), expected, rel_tol=1e-6)
    assert float(L.gsc_loss(iscam, iscam)) == pytest.approx(0.0, abs=1e-5)


def test_background_map_and_alpha() -> None:
    cam = torch.tensor([[2.0, 1.0], [-1.0, 4.0]]).view(1, 2, 1, 2)  # per-channel max: 2 and 4
    full = L.with_background(cam)
    fg = torch.tensor([[1.0, 0.5], [0.0, 1.0]]) / torch.tensor([[1 + 0.5e-5], [1 + 0.25e-5]])
    torch.testing.assert_close(full[0, 1:, 0], fg)
    torch.testing.assert_close(full[0, 0, 0], 1.0 - fg.amax(0))
    sq = L.background_map(L.normalize_cam(torch.tensor([0.5, 1.0]).view(1, 1, 1, 2)), alpha=2.0)
    torch.testing.assert_close(sq.flatten(), torch.tensor([0.25, 0.0]), atol=1e-4, rtol=0)
