"""SIPE's tensor pieces: background map, structure-aware seeds, prototypes, IS-CAM and the GSC loss.

SIPE, CVPR 2022, "Self-supervised Image-specific Prototype Exploration for Weakly Supervised Semantic
Segmentation" (Chen et al.). Every function is a pure function of tensors (no module state), so the
training step, the inference path and the tests call the same code.

Letters: B batch, K foreground classes, K1 = K + 1 channels with background first, C feature channels,
h, w the feature size and N = h * w.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

EPS = 1e-5  # the official code's epsilon in every max-normalisation and L2-normalisation


def normalize_cam(cam: Tensor) -> Tensor:
    """ReLU then divide by the per-channel spatial max: ``relu(cam) / (max_hw + 1e-5)``.

    Args:
        cam: (B, K, h, w) raw class activation maps.

    Returns:
        (B, K, h, w) maps in [0, 1).
    """
    cam = F.relu(cam)
    return cam / (cam.amax(dim=(2, 3), keepdim=True) + EPS)


def background_map(norm_cam: Tensor, *, alpha: float = 1.0) -> Tensor:
    """The background map ``M_b = (1 - max_k M_k) ** alpha`` (paper eq. 2; the official code uses alpha = 1).

    Args:
        norm_cam: (B, K, h, w) normalised foreground maps in [0, 1].
        alpha: the exponent; 1 reproduces the official code.

    Returns:
        (B, 1, h, w) background map.
    """
    bg = 1.0 - norm_cam.amax(dim=1, keepdim=True)  # (B, 1, h, w)
    return bg if alpha == 1.0 else bg.clamp_min(0.0).pow(alpha)


def with_background(cam: Tensor, *, alpha: float = 1.0) -> Tensor:
    """``[M_b; M_fg]``: normalised foreground maps with the background map prepended, (B, K+1, h, w)."""
    fg = normalize_cam(cam)
    return torch.cat([background_map(fg, alpha=alpha), fg], dim=1)


def structure_iou(cams: Tensor, features: Tensor, *, chunk_size: int = 1024) -> Tensor:
    """For every pixel i and class k, the soft IoU between i's structure map and class k's map (eq. 3-4).

    ``S_ij = relu(<f_i, f_j>)`` with L2-normalised features; ``inter_k(i) = sum_j S_ij M_k(j)``;
    ``union_k(i) = sum_j S_ij + sum_j M_k(j) - inter_k(i)``; ``IoU_k(i) = inter / union``.
    The N x N structure map is built ``chunk_size`` rows at a time and never for all classes at once, so the
    memory is O(B * chunk_size * N) rather than the official O(B * K1 * N * N).

    Args:
        cams: (B, K1, h, w) maps in [0, 1] (background first).
        features: (B, C, h, w) semantic features (x4 in training, the hierarchical features at inference).
        chunk_size: rows of S computed at once.

    Returns:
        (B, K1, h, w) IoU values in [0, 1].
    """
    b, k1, h, w = cams.shape
    n = h * w
    f = features.flatten(2)  # (B, C, N)
    f = f / (f.norm(dim=1, keepdim=True) + EPS)
    m = cams.flatten(2)  # (B, K1, N)
    cam_sum = m.sum(-1)  # (B, K1): sum_j M_k(j)
    ious = []
    for start in range(0, n, chunk_size):
        rows = f[:, :, start : start + chunk_size]  # (B, C, n_rows)
        s = F.relu(torch.bmm(rows.transpose(1, 2), f))  # (B, n_rows, N): S_ij
        inter = torch.bmm(s, m.transpose(1, 2))  # (B, n_rows, K1)
        union = s.sum(-1, keepdim=True) + cam_sum.unsqueeze(1) - inter  # (B, n_rows, K1)
        ious.append(inter / union.clamp_min(EPS))
    return torch.cat(ious, dim=1).transpose(1, 2).reshape(b, k1, h, w)  # (B, K1, N) -> (B, K1, h, w)


def structure_seeds(
    cams: Tensor, features: Tensor, valid: Tensor, *, bg_iou_weight: float = 0.5, chunk_size: int = 1024
) -> Tensor:
    """Structure-aware seeds (eq. 5): one-hot argmax of the structure IoU, background IoU scaled, masked.

    Args:
        cams: (B, K1, h, w) maps in [0, 1], background first; absent classes should already be zero.
        features: (B, C, h, w) semantic features.
        valid: (B, K1, h, w) or (B, K1, 1, 1) 0/1 mask: crop-valid region times the image's labels (background
            always on). Seeds of absent classes and outside the crop are zero.
        bg_iou_weight: factor on the background IoU (0.5 in the official code).
        chunk_size: see :func:`structure_iou`.

    Returns:
        (B, K1, h, w) float 0/1 seeds, no gradient.
    """
    with torch.no_grad():
        iou = structure_iou(cams, features, chunk_size=chunk_size)
        iou[:, 0] = iou[:, 0] * bg_iou_weight
        seeds = F.one_hot(iou.argmax(1), cams.shape[1])  # (B, h, w, K1)
        seeds = seeds.permute(0, 3, 1, 2).to(cams.dtype)  # (B, K1, h, w)
        return seeds * valid


def prototypes(seeds: Tensor, features: Tensor) -> Tensor:
    """Image-specific prototypes: ``p_k = sum_hw(seed_k * F) / (h * w)`` (the official spatial mean).

    Classes without seed pixels (absent classes) get a zero prototype.

    Args:
        seeds: (B, K1, h', w') 0/1 seeds (resized to the feature size with nearest if needed).
        features: (B, C, h, w) hierarchical features.

    Returns:
        (B, K1, C) prototypes.
    """
    if seeds.shape[2:] != features.shape[2:]:
        seeds = F.interpolate(seeds, size=features.shape[2:], mode="nearest")
    # b: batch, k: class, c: channel, n: pixel
    return torch.einsum("bkn,bcn->bkc", seeds.flatten(2), features.flatten(2)) / seeds[0, 0].numel()


def is_cam(protos: Tensor, features: Tensor) -> Tensor:
    """IS-CAM (eq. 7): ``relu(cos(F(i), p_k))``; a zero prototype gives 0 everywhere.

    Args:
        protos: (B, K1, C) prototypes.
        features: (B, C, h, w) hierarchical features.

    Returns:
        (B, K1, h, w) maps in [0, 1].
    """
    p = protos / protos.norm(dim=-1, keepdim=True).clamp_min(1e-8)  # (B, K1, C)
    f = features / features.norm(dim=1, keepdim=True).clamp_min(1e-8)  # (B, C, h, w)
    return F.relu(torch.einsum("bkc,bchw->bkhw", p, f))  # (B, K1, h, w)


def gsc_loss(norm_cam: Tensor, iscam: Tensor) -> Tensor:
    """General-specific consistency (eq. 9): ``mean |M - IS / (max_hw IS + 1e-5)|`` over B x K1 x h x w.

    Args:
        norm_cam: (B, K1, h, w) general maps (background first, masked by the valid region).
        iscam: (B, K1, h, w) image-specific maps.

    Returns:
        Scalar loss.
    """
    target = iscam / (iscam.amax(dim=(2, 3), keepdim=True) + EPS)
    return (norm_cam - target).abs().mean()
