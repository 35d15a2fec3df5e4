"""Universum regularisation of DA-WSOL (L_u on the unknown-class target samples T^u).

DA-WSOL, CVPR 2022, arXiv:2203.01714. The official code takes the mean of the concatenated T^u
pixel features, U in R^{N_u x D}. The features are post-ReLU, so this is an L1 shrinkage of the
background pixels towards the origin, where every class score equals its bias: the class
boundaries then pass through the unknown-class samples.
"""

from __future__ import annotations

import torch


def universum_loss(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the selected pixel features over all their elements.

    Args:
        features: ``(B, D, h, w)`` pixel features (with gradient).
        mask: ``(B, h, w)`` bool, True on the T^u pixels.

    Returns:
        Scalar ``sum(P * mask) / (N_u * D)``; exactly 0 (still attached to the graph) when N_u = 0.
    """
    if mask.shape != (features.shape[0], *features.shape[2:]):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match features {tuple(features.shape)}")
    weight = mask.to(features.dtype)[:, None]  # (B, 1, h, w)
    count = weight.sum() * features.shape[1]
    return (features * weight).sum() / count.clamp_min(1.0)
