"""Full-reference image quality: PSNR and SSIM of an image against its reference (a translation against its clean twin).

Both take uint8-range images ``(H, W, 3)`` or ``(H, W)`` (numpy or torch, any numeric dtype) with values in
[0, data_range] and compute in float64.

* :func:`psnr`: ``10 log10(data_range^2 / MSE)`` over all pixels and channels (scikit-image's
  ``peak_signal_noise_ratio``); ``inf`` for identical images.
* :func:`ssim`: Wang, Bovik, Sheikh and Simoncelli (IEEE TIP 2004) with their settings: an 11 x 11 Gaussian window
  of sigma 1.5, ``K1 = 0.01``, ``K2 = 0.03``, population (biased) local statistics, computed per channel and averaged
  over the "valid" region where the window fits inside the image and then over channels. This is scikit-image's
  ``structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
  channel_axis=-1)``: its filter truncates the Gaussian at 3.5 sigma (radius 5, hence 11 x 11) and it crops
  ``(11 - 1) // 2 = 5`` border pixels before averaging.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lowlabel.metrics.wsol import to_numpy

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # 11 x 11 window (Wang et al. 2004)
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _pair(image: Any, reference: Any) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(to_numpy(image), dtype=np.float64)
    b = np.asarray(to_numpy(reference), dtype=np.float64)
    if a.shape != b.shape or a.ndim not in (2, 3):
        raise ValueError(f"image and reference must have the same (H, W) or (H, W, C) shape, got {a.shape} and "
                         f"{b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("image quality of a non-finite image")
    return a, b


def psnr(image: Any, reference: Any, *, data_range: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` when the images are equal."""
    a, b = _pair(image, reference)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(data_range**2 / mse))


def gaussian_kernel(radius: int = SSIM_RADIUS, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """(2r + 1,) the normalised 1-D Gaussian."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2.0 * sigma**2))
    return k / k.sum()


def _filter_valid(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable correlation of (H, W) with the 1-D kernel ``k`` along both axes, 'valid' part only:
    (H - 2r, W - 2r)."""
    n = len(k)
    rows = sum(k[i] * x[i : x.shape[0] - n + 1 + i] for i in range(n))  # (H - 2r, W)
    return sum(k[j] * rows[:, j : x.shape[1] - n + 1 + j] for j in range(n))  # (H - 2r, W - 2r)


def ssim(image: Any, reference: Any, *, data_range: float = 255.0) -> float:
    """Mean structural similarity (module docstring); in [-1, 1], 1 for identical images.

    Raises:
        ValueError: shapes differ, or the image is smaller than the 11 x 11 window.
    """
    a, b = _pair(image, reference)
    if min(a.shape[:2]) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * SSIM_RADIUS + 1} x {2 * SSIM_RADIUS + 1} pixels, got "
                         f"{a.shape[:2]}")
    a3 = a[..., None] if a.ndim == 2 else a  # (H, W, C)
    b3 = b[..., None] if b.ndim == 2 else b
    k = gaussian_kernel()
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    scores = []
    for ch in range(a3.shape[2]):
        x, y = a3[..., ch], b3[..., ch]
        mx, my = _filter_valid(x, k), _filter_valid(y, k)
        vx = _filter_valid(x * x, k) - mx**2
        vy = _filter_valid(y * y, k) - my**2
        cxy = _filter_valid(x * y, k) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))  # (H - 10, W - 10)
        scores.append(float(s.mean()))
    return float(np.mean(scores))
