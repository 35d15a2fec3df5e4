"""MMD: agreement with a naive loop over the kernel matrix, closed-form values, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from lowlabel.losses.mmd import mmd_linear, mmd_quadratic


def naive_kernel_matrix(s: torch.Tensor, t: torch.Tensor, mul: float, num: int) -> torch.Tensor:
    """O(n^2) double loop: pooled samples, mean off-diagonal squared distance, K Gaussian kernels."""
    total = torch.cat([s, t]).double()
    n = total.shape[0]
    dist = torch.zeros(n, n, dtype=torch.float64)
    for a in range(n):
        for b in range(n):
            dist[a, b] = ((total[a] - total[b]) ** 2).sum()
    sigma = dist.sum() / (n * n - n) / mul ** (num // 2)
    return sum(torch.exp(-dist / (sigma * mul**q)) for q in range(num))


def naive_linear(s: torch.Tensor, t: torch.Tensor, mul: float = 2.0, num: int = 5) -> float:
    k = naive_kernel_matrix(s, t, mul, num)
    n = s.shape[0]
    total = 0.0
    for j in range(n):
        j1 = (j + 1) % n
        total += k[j, j1] + k[n + j, n + j1] - k[j, n + j1] - k[j1, n + j]
    return float(total / n)


def naive_quadratic(s: torch.Tensor, t: torch.Tensor, mul: float = 2.0, num: int = 5) -> float:
    k = naive_kernel_matrix(s, t, mul, num)
    n, m = s.shape[0], t.shape[0]
    xx = sum(k[a, b] for a in range(n) for b in range(n)) / n**2
    yy = sum(k[n + a, n + b] for a in range(m) for b in range(m)) / m**2
    xy = sum(k[a, n + b] for a in range(n) for b in range(m)) / (n * m)
    return float(xx + yy - 2 * xy)


def test_linear_matches_naive_loop() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 8, 5, generator=g)
    t = torch.randn(3, 8, 5, generator=g) + 0.7
    got = mmd_linear(s, t)
    for b in range(3):
        assert got[b].item() == pytest.approx(naive_linear(s[b], t[b]), rel=1e-5, abs=1e-6)


def test_quadratic_matches_naive_loop_and_other_kernel_settings() -> None:
    g = torch.Generator().manual_seed(1)
    s = torch.randn(2, 6, 4, generator=g)
    t = torch.randn(2, 9, 4, generator=g) * 2
    got = mmd_quadratic(s, t, kernel_mul=3.0, kernel_num=3)
    for b in range(2):
        assert got[b].item() == pytest.approx(naive_quadratic(s[b], t[b], 3.0, 3), rel=1e-5, abs=1e-6)


def test_identical_sets_give_zero() -> None:
    x = torch.randn(2, 16, 7)
    assert torch.allclose(mmd_linear(x, x.clone()), torch.zeros(2), atol=1e-6)
    assert torch.allclose(mmd_quadratic(x, x.clone()), torch.zeros(2), atol=1e-6)


def test_known_value_two_points_per_set() -> None:
    # s = {0, 0}, t = {1, 1} in 1-D. Pooled squared distances: 0 within a set, 1 across (8 of 12
    # off-diagonal pairs) -> mean 8/12 = 2/3, sigma = (2/3) / 4 = 1/6, bandwidths 1/6 * 2^q.
    # Linear MMD: k(s,s) = k(t,t) = 5, k(s,t) = sum_q exp(-6 / 2^q); MMD = 2 * (5 - k(s,t)).
    s = torch.zeros(1, 2, 1)
    t = torch.ones(1, 2, 1)
    k_st = sum(math.exp(-6 / 2**q) for q in range(5))
    assert mmd_linear(s, t).item() == pytest.approx(2 * (5 - k_st), rel=1e-6)


def test_separated_sets_score_higher_and_gradient_flows() -> None:
    g = torch.Generator().manual_seed(2)
    s = torch.randn(1, 32, 8, generator=g, requires_grad=True)
    near = torch.randn(1, 32, 8, generator=g)
    far = near + 3.0
    assert mmd_quadratic(s, far).item() > mmd_quadratic(s, near).item()
    mmd_linear(s, far).sum().backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0


def test_bad_shapes_raise() -> None:
    with pytest.raises(ValueError, match="equal"):
        mmd_linear(torch.zeros(1, 4, 3), torch.zeros(1, 5, 3))
    with pytest.raises(ValueError, match="at least 2"):
        mmd_linear(torch.zeros(1, 1, 3), torch.zeros(1, 1, 3))
