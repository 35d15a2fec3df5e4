"""ContrastCorr's losses on hand cases and against dense computations written out here."""

from __future__ import annotations

import pytest
import torch

from lowlabel.losses import contrastcorr as L


def test_lab_l1_weights_a_and_b_ten_times() -> None:
    pred = torch.zeros(2, 3, 2, 2)
    target = torch.zeros(2, 3, 2, 2)
    target[0, 0] = 0.4  # |L| mean 0.4
    target[1, 1, 0, 0] = 0.8  # |a| mean 0.2 -> x10
    target[1, 2] = -0.1  # |b| mean 0.1 -> x10
    torch.testing.assert_close(L.lab_l1(pred, target), torch.tensor([0.4, 3.0]))


def test_outliers_count_as_zero_in_the_mean() -> None:
    losses = torch.tensor([1.0, 3.0, 2.0, 2.5])
    assert float(L.reject_outliers(losses)) == pytest.approx((1.0 + 2.0 + 2.5) / 4)  # 2.5 itself is kept
    assert float(L.reject_outliers(losses, None)) == pytest.approx(8.5 / 4)


def test_affinity_transform_and_self_affinity() -> None:
    ref = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (B=1, C=2, N=2)
    tgt = torch.tensor([[[0.0], [5.0]]])  # one target cell, like reference cell 1
    values = torch.tensor([[[10.0, 20.0]]])
    out = L.affinity_transform(L.affinity(ref, tgt), values)
    p1 = torch.exp(torch.tensor(5.0)) / (1 + torch.exp(torch.tensor(5.0)))
    torch.testing.assert_close(out, torch.tensor([[[10.0 * (1 - p1) + 20.0 * p1]]]))
    a = L.self_affinity(torch.tensor([[[1.0, 2.0], [0.0, 1.0]]]))
    assert a[0, 0, 0] < -1e9 and a[0, 1, 1] < -1e9 and float(a[0, 0, 1]) == 2.0


def test_concentration_loss_hand_values() -> None:
    """An identity match on an 8 x 8 map: expected coordinates = the grid, so each 8 x 8 window holds the whole
    grid: per channel 8 rows x (1 + 9 + 25 + 49) x 2 / 49; two channels, two directions, over 2 x 64 entries = 6/7.
    Uniform logits put every expected coordinate at the grid's mean: 0."""
    eye = torch.eye(64)[None] * 100.0
    assert float(L.concentration_loss(eye, (8, 8))) == pytest.approx(6.0 / 7.0, rel=1e-5)
    assert float(L.concentration_loss(torch.zeros(1, 64, 64), (8, 8))) == pytest.approx(0.0, abs=1e-10)


def test_concentration_loss_equals_a_direct_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 64, 64, generator=gen)  # 8 x 8 maps, windows of 4 every 4
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 8), indexing="ij")
    total = 0.0
    for a in (logits, logits.transpose(1, 2)):
        p = torch.softmax(a, dim=1)
        cx = (xs.reshape(1, 64, 1) * p).sum(1).view(2, 8, 8)
        cy = (ys.reshape(1, 64, 1) * p).sum(1).view(2, 8, 8)
        for c in (cx, cy):
            for by in range(2):
                for bx in range(2):
                    block = c[:, 4 * by:4 * by + 4, 4 * bx:4 * bx + 4]
                    total += float(((block - block.mean(dim=(1, 2), keepdim=True)) ** 2).sum())
    expected = total / (2 * 2 * 16 * 4)
    assert float(L.concentration_loss(logits, (8, 8), window=4, stride=4)) == pytest.approx(expected, rel=1e-5)


def dense_inter_video(tgt, ref, values, temp):
    b, c, n_t = tgt.shape
    n_r = ref.shape[2]
    rows = torch.cat([tgt[i].t() for i in range(b)])  # (B*N_t, C)
    cols = torch.cat([ref[i] for i in range(b)], dim=1)  # (C, B*N_r)
    p = torch.softmax(rows @ cols * temp, dim=1)
    carried = p @ torch.cat([values[i].t() for i in range(b)])  # (B*N_t, D)
    own = torch.stack([p[i * n_t:(i + 1) * n_t, i * n_r:(i + 1) * n_r].sum(1) for i in range(b)]).reshape(-1)
    return torch.stack([carried[i * n_t:(i + 1) * n_t].t() for i in range(b)]), (own - 1).abs().mean()


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_inter_video_transform_equals_the_dense_one_at_any_chunk(chunk: int) -> None:
    gen = torch.Generator().manual_seed(3)
    tgt, ref = torch.randn(3, 5, 6, generator=gen), torch.randn(3, 5, 8, generator=gen)
    values = torch.randn(3, 4, 8, generator=gen)
    got_v, got_s = L.inter_video_transform(tgt, ref, values, temp=0.7, chunk=chunk)
    want_v, want_s = dense_inter_video(tgt, ref, values, 0.7)
    torch.testing.assert_close(got_v, want_v)
    torch.testing.assert_close(got_s, want_s)


def test_sparsity_is_zero_when_each_video_only_matches_itself() -> None:
    feats = torch.zeros(2, 2, 3)
    feats[0, 0] = 10.0  # video 0 lives on channel 0, video 1 on channel 1
    feats[1, 1] = 10.0
    _, sparsity = L.inter_video_transform(feats, feats, torch.zeros(2, 1, 3))
    assert float(sparsity) == pytest.approx(0.0, abs=1e-6)
    _, mixed = L.inter_video_transform(feats, feats.flip(0), torch.zeros(2, 1, 3))  # references swapped
    assert float(mixed) == pytest.approx(1.0, abs=1e-6)


def test_inter_video_gradients_equal_the_dense_ones() -> None:
    """Chunked with per-block recomputation in backward: the same gradients as the dense computation."""
    gen = torch.Generator().manual_seed(4)
    tgt = torch.randn(2, 4, 6, generator=gen, requires_grad=True)
    ref = torch.randn(2, 4, 5, generator=gen, requires_grad=True)
    values = torch.randn(2, 3, 5, generator=gen)
    weights = torch.randn(2, 3, 6, generator=gen)
    carried, sparsity = L.inter_video_transform(tgt, ref, values, temp=0.5, chunk=4)
    ((carried * weights).sum() + sparsity).backward()
    got = (tgt.grad.clone(), ref.grad.clone())
    tgt.grad, ref.grad = None, None
    carried, sparsity = dense_inter_video(tgt, ref, values, 0.5)
    ((carried * weights).sum() + sparsity).backward()
    torch.testing.assert_close(got[0], tgt.grad)
    torch.testing.assert_close(got[1], ref.grad)
