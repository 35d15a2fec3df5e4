"""PSNR and SSIM: closed forms, a naive windowed SSIM, and a value computed once with scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lowlabel.metrics.image_quality import gaussian_kernel, psnr, ssim


def test_psnr_closed_forms() -> None:
    a = np.zeros((4, 5, 3))
    assert psnr(a, a) == math.inf
    b = a + 10  # MSE 100
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    c = a.copy()
    c[0, 0, 0] = 60  # MSE = 3600 / 60
    assert psnr(a, c) == pytest.approx(10 * math.log10(255**2 / 60))


def test_ssim_of_constant_images_is_the_luminance_term() -> None:
    a, b = np.full((12, 13), 100.0), np.full((12, 13), 150.0)
    c1 = (0.01 * 255) ** 2  # variances and covariance are 0: SSIM = (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1)
    assert ssim(a, b) == pytest.approx((2 * 100 * 150 + c1) / (100**2 + 150**2 + c1))
    assert ssim(a, a) == pytest.approx(1.0)


def naive_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. (2004) window by window: an 11 x 11 Gaussian (sigma 1.5) at every position where it fits."""
    k = np.outer(gaussian_kernel(), gaussian_kernel())  # (11, 11), sums to 1
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            x, y = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
            mx, my = (k * x).sum(), (k * y).sum()
            vx, vy = (k * (x - mx) ** 2).sum(), (k * (y - my) ** 2).sum()
            cxy = (k * (x - mx) * (y - my)).sum()
            values.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_matches_a_window_by_window_loop_and_averages_channels() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (15, 18, 2)).astype(float)
    b = np.clip(a + rng.normal(0, 30, a.shape), 0, 255)
    expected = np.mean([naive_ssim(a[..., c], b[..., c]) for c in range(2)])
    assert ssim(a, b) == pytest.approx(expected, rel=1e-10)


def test_ssim_golden_value_from_scikit_image() -> None:
    # skimage.metrics.structural_similarity(a2, b2, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    # data_range=255) = 0.12057463892359796 (scikit-image 0.26.0, run once on this machine; not a dependency)
    rng = np.random.default_rng(0)
    rng.integers(0, 256, (40, 50, 3))  # the draws before, as in the session that computed the value
    rng.normal(0, 20, (40, 50, 3))
    a2 = rng.integers(0, 256, (13, 17)).astype(float)
    b2 = rng.integers(0, 256, (13, 17)).astype(float)
    assert ssim(a2, b2) == pytest.approx(0.12057463892359796, abs=1e-12)


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="same"):
        ssim(np.zeros((12, 12)), np.zeros((12, 13)))
    with pytest.raises(ValueError, match="at least 11"):
        ssim(np.zeros((10, 12)), np.zeros((10, 12)))
    with pytest.raises(ValueError, match="non-finite"):
        psnr(np.full((3, 3), np.nan), np.zeros((3, 3)))
