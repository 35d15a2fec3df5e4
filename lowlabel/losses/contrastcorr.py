"""ContrastCorr's losses as tensor operations (Wang et al., AAAI 2021; ``594422814/ContrastCorr``, built on UVC).

* :func:`lab_l1`: the per-sample LAB L1 (``weightsingle_L1``): mean |L| + 10 mean |a| + 10 mean |b| per sample.
* :func:`reject_outliers`: per-sample losses above a threshold (2.5) count as 0 in the batch mean.
* :func:`affinity_transform`: Â = softmax(A * temp over the reference cells); reconstruction = X_ref Â.
* :func:`self_affinity`: a frame's affinity with itself, the diagonal masked (-1e10), for self-reconstruction.
* :func:`concentration_loss`: UVC's ``ConcentrationSwitchLoss`` (window 8, stride 8): the expected coordinates under
  softmax(A) and softmax(A^T) should stay together inside each window.
* :func:`inter_video_transform`: the contrastive transformation across the batch: every target cell of every video
  attends over the reference cells of *all* videos; returns the reconstruction and the sparsity loss (the mass that
  should stay inside the own video). Computed ``chunk`` target cells at a time, so the (B*N)^2 affinity is never
  built; the values equal the dense computation.

Shapes: features (B, C, N) with N = h * w cells in row-major order; affinities (B, N_ref, N_tgt).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

LAB_WEIGHTS = (1.0, 10.0, 10.0)
OUTLIER_THRESHOLD = 2.5
SELF_MASK = 1e10


def lab_l1(pred: Tensor, target: Tensor, weights: tuple[float, float, float] = LAB_WEIGHTS) -> Tensor:
    """(B,) per-sample weighted L1 of (B, 3, H, W) LAB images: sum_c w_c * mean |pred_c - target_c|."""
    diff = (pred - target).abs().flatten(2).mean(dim=2)  # (B, 3)
    return diff @ torch.as_tensor(weights, dtype=diff.dtype, device=diff.device)


def reject_outliers(per_sample: Tensor, threshold: float | None = OUTLIER_THRESHOLD) -> Tensor:
    """The batch mean of ``per_sample`` with values above ``threshold`` set to 0 (they still count in the mean);
    ``None`` keeps every value (the official code switches the rejection off in its first epochs)."""
    if threshold is None:
        return per_sample.mean()
    return torch.where(per_sample > threshold, torch.zeros_like(per_sample), per_sample).mean()


def affinity(ref: Tensor, tgt: Tensor) -> Tensor:
    """(B, N_ref, N_tgt) dot products of (B, C, N) features, no normalisation (``NLM_woSoft``)."""
    return ref.transpose(1, 2) @ tgt


def affinity_transform(logits: Tensor, ref_values: Tensor, temp: float = 1.0) -> Tensor:
    """``ref_values`` (B, D, N_ref) carried to the target cells: (B, D, N_tgt) = X softmax(A * temp, over N_ref)."""
    return ref_values @ torch.softmax(logits * temp, dim=1)


def self_affinity(feats: Tensor) -> Tensor:
    """(B, N, N) affinity of (B, C, N) features with themselves, the diagonal lowered by 1e10 (no self-copy)."""
    a = affinity(feats, feats)
    eye = torch.eye(a.shape[1], dtype=torch.bool, device=a.device)
    return a - SELF_MASK * eye


def identity_grid(h: int, w: int, *, device: torch.device | None = None) -> Tensor:
    """(2, h * w) cell coordinates (x, y) in [-1, 1], corners included (``affine_grid`` with align_corners=True)."""
    ys = torch.linspace(-1.0, 1.0, h, device=device)
    xs = torch.linspace(-1.0, 1.0, w, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)])


def concentration_loss(logits: Tensor, hw: tuple[int, int], *, window: int = 8, stride: int = 8,
                       temp: float = 1.0) -> Tensor:
    """UVC's ``ConcentrationSwitchLoss``: the squared spread of expected coordinates within each window.

    For both directions (A and A^T), each target cell's expected reference coordinate is
    ``grid softmax(A * temp, over the reference cells)``; within every ``window`` x ``window`` block (taken every
    ``stride`` cells, no padding) the squared deviations from the block mean are summed; the two sums are divided by
    the number of entries of one direction (B x 2 x blocks x window^2).

    Args:
        logits: (B, N, N) affinity logits of two frames with the same (h, w) feature size.
        hw: (h, w).
    """
    b, n, _ = logits.shape
    h, w = hw
    grid = identity_grid(h, w, device=logits.device).to(logits.dtype)  # (2, N)
    total, count = logits.new_zeros(()), 0
    for a in (logits, logits.transpose(1, 2)):
        coords = (grid @ torch.softmax(a * temp, dim=1)).view(b, 2, h, w)
        blocks = F.unfold(coords, window, stride=stride).view(b, 2, window * window, -1)  # (B, 2, win^2, blocks)
        total = total + ((blocks - blocks.mean(dim=2, keepdim=True)) ** 2).sum()
        count = blocks.numel()
    return total / count


def _inter_block(rows: Tensor, all_ref: Tensor, all_values: Tensor, own: Tensor, ref_video: Tensor,
                 temp: float) -> tuple[Tensor, Tensor]:
    """One block of target cells: (carried values (n, D), attention mass inside the own video (n,))."""
    prob = torch.softmax(rows @ all_ref * temp, dim=1)  # (n, B*N_r)
    return prob @ all_values.t(), (prob * (ref_video[None] == own[:, None])).sum(dim=1)


def inter_video_transform(tgt: Tensor, ref: Tensor, ref_values: Tensor, *, temp: float = 1.0,
                          chunk: int = 1024) -> tuple[Tensor, Tensor]:
    """The contrastive transformation across videos (``Batch_Contrastive``).

    Every target cell of every video attends over the reference cells of all videos in the batch:
    ``P = softmax(F_t^T F_r * temp)`` over all B * N_ref reference cells.

    Args:
        tgt: (B, C, N_t) target features.
        ref: (B, C, N_r) reference features.
        ref_values: (B, D, N_r) what is carried (the colour autoencoder's features of the references).
        temp: softmax temperature factor.
        chunk: target cells per block; the result does not depend on it. With gradients, each block is
            recomputed in backward (activation checkpointing), so training never holds the whole matrix either.

    Returns:
        ((B, D, N_t) the carried values, the sparsity loss: mean over target cells of |sum of P over the cells of
        its own video - 1|).
    """
    b, c, n_t = tgt.shape
    n_r = ref.shape[2]
    all_ref = ref.permute(1, 0, 2).reshape(c, b * n_r)  # (C, B*N_r), video-major
    all_values = ref_values.permute(1, 0, 2).reshape(ref_values.shape[1], b * n_r)  # (D, B*N_r)
    flat_t = tgt.permute(0, 2, 1).reshape(b * n_t, c)  # (B*N_t, C), video-major
    own_video = torch.arange(b, device=tgt.device).repeat_interleave(n_t)  # (B*N_t,)
    ref_video = torch.arange(b, device=tgt.device).repeat_interleave(n_r)  # (B*N_r,)
    outs, sparsity = [], tgt.new_zeros(())
    for start in range(0, b * n_t, chunk):
        rows = slice(start, min(start + chunk, b * n_t))
        args = (flat_t[rows], all_ref, all_values, own_video[rows], ref_video, temp)
        if torch.is_grad_enabled() and (flat_t.requires_grad or all_ref.requires_grad):
            # keep only this block's inputs for backward and recompute its (n x B*N_r) softmax there: the memory of
            # training stays O(chunk x B*N_r) instead of the whole matrix
            carried, inside = checkpoint(_inter_block, *args, use_reentrant=False)
        else:
            carried, inside = _inter_block(*args)
        outs.append(carried)
        sparsity = sparsity + (inside - 1.0).abs().sum()
    values = torch.cat(outs).view(b, n_t, -1).permute(0, 2, 1)
    return values, sparsity / (b * n_t)
