"""Target Sample Assigner: batched k-means (known split, scikit-learn agreement), memory, sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import k_means

from lowlabel.losses.tsa import TargetSampleAssigner, batched_kmeans


def three_blobs(seed: int, n_per: tuple[int, ...] = (40, 30, 50), dim: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """Points around 0 (background), around 5*e0 (source-like) and around 5*e1 (target-like)."""
    g = torch.Generator().manual_seed(seed)
    means = torch.zeros(3, dim)
    means[1, 0], means[2, 1] = 5.0, 5.0
    labels = torch.cat([torch.full((n,), k) for k, n in enumerate(n_per)])
    pts = means[labels] + 0.3 * torch.randn(len(labels), dim, generator=g)
    perm = torch.randperm(len(labels), generator=g)
    return pts[perm], labels[perm]


def test_kmeans_recovers_constructed_split() -> None:
    x, truth = three_blobs(0)
    init = torch.tensor([[0.0] * 6, [4.0, 1, 0, 0, 0, 0], [1.0, 4, 0, 0, 0, 0]])
    labels, centers = batched_kmeans(x[None], init[None])
    assert torch.equal(labels[0], truth)
    for k in range(3):
        assert torch.allclose(centers[0, k], x[truth == k].mean(0), atol=1e-5)


def test_kmeans_matches_sklearn_on_each_problem_of_a_batch() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 64, 5, generator=g).abs()  # overlapping clusters: several Lloyd iterations
    init = x[:, :3].clone() + 0.1
    init[3, 2] = init[3, 1]  # two equal centres: one empties and is relocated
    labels, centers = batched_kmeans(x, init)
    for b in range(4):
        ref_centers, ref_labels, _ = k_means(x[b].double().numpy(), n_clusters=3, init=init[b].double().numpy(),
                                             n_init=1, random_state=0)
        assert np.array_equal(labels[b].numpy(), ref_labels)
        assert np.allclose(centers[b].numpy(), ref_centers, atol=1e-5)


def sklearn_split(x: torch.Tensor, init: torch.Tensor) -> np.ndarray:
    return k_means(x.double().numpy(), n_clusters=3, init=init.double().numpy(), n_init=1, random_state=0)[1]


def test_memory_anchor_init_and_cumulative_mean() -> None:
    tsa = TargetSampleAssigner(num_classes=2, dim=6, num_source=4, num_target=4)
    x1, _ = three_blobs(1)
    x2, _ = three_blobs(2)
    s1, s2 = torch.tensor([4.0, 1, 0, 0, 0, 0]), torch.tensor([3.0, 2, 0, 0, 0, 0])
    # image 1 (class 1, never seen): M_2 <- s1 (count 1), then k-means from [0; s1; s1] (two equal
    # centres: scikit-learn relocates the empty one), then M_2 <- mean(s1, c_2), M_0 <- c_0.
    lab1 = sklearn_split(x1, torch.stack([torch.zeros(6), s1, s1]))
    got1 = tsa.assign(x1[None], s1[None], torch.tensor([1]))
    assert np.array_equal(got1[0].numpy(), lab1)
    c_u1, c_t1 = x1[lab1 == 0].mean(0), x1[lab1 == 2].mean(0)
    assert tsa.counts.tolist() == [1, 0, 2]
    assert torch.allclose(tsa.memory[0], c_u1, atol=1e-5)
    assert torch.allclose(tsa.memory[2], (s1 + c_t1) / 2, atol=1e-5)
    assert tsa.memory[1].abs().sum() == 0
    # image 2 (class 1 again): init [M_0; s2; M_2], then cumulative means over 2 and 3 values.
    lab2 = sklearn_split(x2, torch.stack([c_u1, s2, (s1 + c_t1) / 2]))
    got2 = tsa.assign(x2[None], s2[None], torch.tensor([1]))
    assert np.array_equal(got2[0].numpy(), lab2)
    c_u2, c_t2 = x2[lab2 == 0].mean(0), x2[lab2 == 2].mean(0)
    assert tsa.counts.tolist() == [2, 0, 3]
    assert torch.allclose(tsa.memory[0], (c_u1 + c_u2) / 2, atol=1e-5)
    assert torch.allclose(tsa.memory[2], (s1 + c_t1 + c_t2) / 3, atol=1e-5)


def test_source_anchor_option_uses_cluster_one() -> None:
    tsa = TargetSampleAssigner(num_classes=1, dim=6, class_anchor_from="source")
    tsa.memory[1], tsa.counts[1] = torch.tensor([1.0, 4, 0, 0, 0, 0]), 1
    x, truth = three_blobs(4)
    s = torch.tensor([[4.0, 1, 0, 0, 0, 0]])
    tsa.assign(x[None], s, torch.tensor([0]))
    assert torch.allclose(tsa.memory[1], (torch.tensor([1.0, 4, 0, 0, 0, 0]) + x[truth == 1].mean(0)) / 2, atol=1e-5)


def test_batched_update_equals_sequential_mean() -> None:
    a = TargetSampleAssigner(num_classes=3, dim=6)
    a.memory[1:] = torch.tensor([[1.0, 4, 0, 0, 0, 0]] * 3)
    a.counts[1:] = 1
    xs = torch.stack([three_blobs(s)[0] for s in (5, 6, 7)])
    pooled = torch.tensor([[4.0, 1, 0, 0, 0, 0]] * 3)
    labels = torch.tensor([0, 0, 2])
    assign = a.assign(xs, pooled, labels)
    cent = [xs[i][assign[i] == 2].mean(0) for i in range(3)]
    assert torch.allclose(a.memory[1], (torch.tensor([1.0, 4, 0, 0, 0, 0]) + cent[0] + cent[1]) / 3, atol=1e-5)
    assert torch.allclose(a.memory[3], (torch.tensor([1.0, 4, 0, 0, 0, 0]) + cent[2]) / 2, atol=1e-5)
    assert a.counts.tolist() == [3, 3, 1, 2]


def test_sampling_draws_from_the_right_clusters_with_gradient() -> None:
    tsa = TargetSampleAssigner(num_classes=1, dim=2, num_source=3, num_target=4)
    pixels = torch.arange(2 * 10 * 2, dtype=torch.float32).view(2, 10, 2).requires_grad_()
    pooled = torch.ones(2, 2, requires_grad=True)
    assign = torch.tensor([[1, 1, 2, 2, 2, 2, 0, 0, 0, 0],  # enough T^f (2) and T^t (4): kept
                           [1, 2, 2, 2, 2, 2, 0, 0, 0, 0]])  # only one T^f: dropped
    out = tsa.sample(pixels, pooled, assign)
    assert out.keep.tolist() == [True, False]
    assert out.source.shape == (1, 3, 2) and out.target.shape == (1, 4, 2)
    assert torch.equal(out.source[0, 0], pooled[0])
    f_rows = {tuple(r) for r in pixels[0, :2].tolist()}
    t_rows = {tuple(r) for r in pixels[0, 2:6].tolist()}
    assert {tuple(r) for r in out.source[0, 1:].tolist()} == f_rows
    assert {tuple(r) for r in out.target[0].tolist()} == t_rows
    (out.source.sum() + out.target.sum()).backward()
    assert pixels.grad[0, :6].eq(1).all() and pixels.grad[0, 6:].eq(0).all() and pixels.grad[1].eq(0).all()


def test_label_out_of_range_raises() -> None:
    tsa = TargetSampleAssigner(num_classes=2, dim=3)
    with pytest.raises(ValueError, match="labels must be in"):
        tsa.assign(torch.rand(1, 8, 3), torch.rand(1, 3), torch.tensor([2]))
