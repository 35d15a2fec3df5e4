"""DA-WSOL's Target Sample Assigner (TSA): split each image's pixels into T^u / T^f / T^t and sample.

DA-WSOL, CVPR 2022, arXiv:2203.01714, section 3.3. Per image i with label y_i, pixel features
T_i (N x D) and image feature s_i:

1. a 3-way k-means on T_i (detached) started from [M_0; s_i; M_{y_i}]; the pixels of cluster 0 are
   the unknown-class samples T^u, cluster 1 the pseudo-source samples T^f, cluster 2 the true
   target samples T^t;
2. the memory M ((C+1) x D: row 0 the universum anchor, row 1 + c the anchor of class c) is a
   cumulative mean of cluster centroids: M_0 of the cluster-0 centroids, M_y of the T^t centroids
   (``class_anchor_from="target"``, the paper) or of the T^f centroids (``"source"``, what the
   official code does). A class anchor starts as the first s_i of that class.
3. sampling: S_i = [s_i; n_s - 1 random T^f pixels], T_i = n_t random T^t pixels, for the images
   with enough of both.

Unlike the official code (scikit-learn, one image at a time on CPU), the k-means here runs for the
whole batch at once in torch, with the memory of the batch start for every image of the batch (the
memory then absorbs the whole batch, which gives the same cumulative mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

UNIVERSUM, PSEUDO_SOURCE, TRUE_TARGET = 0, 1, 2


def batched_kmeans(x: torch.Tensor, init: torch.Tensor, *, max_iter: int = 300,
                   tol: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on B independent problems with given initial centres (scikit-learn semantics).

    Each problem stops when its labels no longer change, or when the summed squared centre shift is
    <= ``tol * mean(var(x_b, dim=0))`` (scikit-learn's relative tolerance), or after ``max_iter``.
    Labels are finally re-assigned to the final centres. An empty cluster is moved to the point
    farthest from its own centre, as scikit-learn does (this happens when a class anchor still
    equals s_i: two identical initial centres).

    Args:
        x: ``(B, N, D)`` points.
        init: ``(B, K, D)`` initial centres.
        max_iter: maximum Lloyd iterations.
        tol: relative tolerance.

    Returns:
        ``(labels (B, N) long, centres (B, K, D))``.
    """
    x = x.detach()
    centers = init.detach().to(x.dtype).clone()
    b, n, k = x.shape[0], x.shape[1], centers.shape[1]
    xt = x.transpose(1, 2).contiguous()  # (B, D, N): centres @ xt is the fast bmm layout for K = 3
    flat = x.reshape(b * n, -1)  # (B*N, D)
    offsets = (torch.arange(b, device=x.device) * k)[:, None]  # (B, 1): cluster j of image i -> row i*K + j
    x_sq = torch.linalg.vector_norm(x, dim=2).square()  # (B, N), computed once
    variance = (x_sq.mean(dim=1) - x.mean(dim=1).square().sum(dim=1)) / x.shape[2]  # mean over D of var
    tols = variance.clamp_min(0.0) * tol  # (B,)
    active = torch.ones(b, dtype=torch.bool, device=x.device)
    prev = torch.full((b, n), -1, dtype=torch.long, device=x.device)
    for _ in range(max_iter):
        scores = _centre_scores(xt, centers)  # (B, K, N): squared distance minus ||x||^2
        labels = scores.argmin(dim=1)  # (B, N)
        rows = (labels + offsets).flatten()  # (B*N,)
        counts = torch.bincount(rows, minlength=b * k).view(b, k).to(x.dtype)  # (B, K)
        sums = torch.zeros(b * k, x.shape[2], dtype=x.dtype, device=x.device).index_add_(0, rows, flat)
        sums = sums.view(b, k, -1)  # (B, K, D)
        empty = (counts == 0) & active[:, None]
        if empty.any():
            _relocate_empty(x, (scores + x_sq[:, None]).transpose(1, 2), labels, counts, sums, empty)
        new = torch.where(active[:, None, None], sums / counts.clamp_min(1)[..., None], centers)
        shift = ((new - centers) ** 2).sum(dim=(1, 2))  # (B,)
        done = (labels == prev).all(dim=1) | (shift <= tols)
        centers, prev = new, torch.where(active[:, None], labels, prev)
        active = active & ~done
        if not active.any():
            break
    return _centre_scores(xt, centers).argmin(dim=1), centers


def _centre_scores(xt: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """``||c||^2 - 2 c.x`` for ``xt (B, D, N)``: squared distances ``(B, K, N)`` minus the constant ``||x||^2``.

    The matmul expansion is scikit-learn's Lloyd step too (torch.cdist takes a slow path for 3 centres).
    """
    return torch.baddbmm((centers * centers).sum(-1)[..., None], centers, xt, alpha=-2.0)


def _relocate_empty(x: torch.Tensor, dist: torch.Tensor, labels: torch.Tensor, counts: torch.Tensor,
                    sums: torch.Tensor, empty: torch.Tensor) -> None:
    """scikit-learn's ``_relocate_empty_clusters_dense``, in place on ``counts``/``sums`` (rare: a loop)."""
    own = dist.gather(2, labels[..., None]).squeeze(2)  # (B, N) distance to own centre
    for b in empty.any(dim=1).nonzero().flatten().tolist():
        holes = empty[b].nonzero().flatten()
        far = own[b].topk(len(holes)).indices
        for hole, point in zip(holes.tolist(), far.tolist()):
            old = labels[b, point]
            sums[b, old] -= x[b, point]
            counts[b, old] -= 1
            sums[b, hole] = x[b, point]
            counts[b, hole] = 1


@dataclass
class TSASamples:
    """Sampled domains for the MMD, for the ``keep`` images only.

    Attributes:
        source: ``(B', n_s, D)`` = [s_i; n_s - 1 pseudo-source pixels] (with gradient).
        target: ``(B', n_t, D)`` true-target pixels (with gradient).
        keep: ``(B,)`` bool, the images with at least n_s - 1 T^f and n_t T^t pixels.
    """

    source: torch.Tensor
    target: torch.Tensor
    keep: torch.Tensor


class TargetSampleAssigner(nn.Module):
    """Memory of anchors + batched k-means split + sampling (module docstring).

    Args:
        num_classes: C.
        dim: feature channels D.
        num_source: n_s, samples per image in S ∪ T^f (including s_i); 32 in DA-WSOL.
        num_target: n_t, samples per image in T^t; 32 in DA-WSOL.
        class_anchor_from: which centroid updates the class anchor: ``"target"`` (cluster 2, T^t, as
            the paper describes the memory) or ``"source"`` (cluster 1, as the official code does).
        max_iter: k-means iterations (scikit-learn default 300).
        tol: k-means relative tolerance (scikit-learn default 1e-4).
    """

    def __init__(self, *, num_classes: int, dim: int, num_source: int = 32, num_target: int = 32,
                 class_anchor_from: Literal["target", "source"] = "target", max_iter: int = 300,
                 tol: float = 1e-4) -> None:
        super().__init__()
        if num_source < 1 or num_target < 2:
            raise ValueError(f"need num_source >= 1 and num_target >= 2, got {num_source}, {num_target}")
        if class_anchor_from not in ("target", "source"):
            raise ValueError(f"class_anchor_from must be 'target' or 'source', got {class_anchor_from!r}")
        self.num_classes, self.num_source, self.num_target = num_classes, num_source, num_target
        self.anchor_cluster = TRUE_TARGET if class_anchor_from == "target" else PSEUDO_SOURCE
        self.max_iter, self.tol = max_iter, tol
        self.register_buffer("memory", torch.zeros(num_classes + 1, dim))  # row 0: universum, 1 + c: class c
        self.register_buffer("counts", torch.zeros(num_classes + 1, dtype=torch.long))

    @torch.no_grad()
    def assign(self, pixels: torch.Tensor, pooled: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Split pixels into clusters and update the memory.

        Args:
            pixels: ``(B, N, D)`` pixel features.
            pooled: ``(B, D)`` image features s_i.
            labels: ``(B,)`` class ids in [0, C).

        Returns:
            ``(B, N)`` long: 0 = T^u, 1 = T^f, 2 = T^t.
        """
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"labels must be in [0, {self.num_classes}), got {labels.tolist()}")
        pixels, pooled = pixels.detach().float(), pooled.detach().float()
        rows = labels.long() + 1
        for row in rows.unique():  # anchor init: the first image of a never-seen class
            if self.counts[row] == 0:
                self.memory[row] = pooled[(rows == row).nonzero()[0, 0]]
                self.counts[row] = 1
        init = torch.stack([self.memory[0].expand_as(pooled), pooled, self.memory[rows]], dim=1)  # (B, 3, D)
        assignment, centers = batched_kmeans(pixels, init, max_iter=self.max_iter, tol=self.tol)
        sizes = torch.nn.functional.one_hot(assignment, 3).sum(dim=1)  # (B, 3)
        self._cumulative_mean(torch.zeros_like(rows), centers[:, UNIVERSUM], sizes[:, UNIVERSUM] > 0)
        self._cumulative_mean(rows, centers[:, self.anchor_cluster], sizes[:, self.anchor_cluster] > 0)
        return assignment

    def _cumulative_mean(self, rows: torch.Tensor, values: torch.Tensor, valid: torch.Tensor) -> None:
        """M_r <- (r M_r + sum of new values) / (r + count): the running mean over every value seen."""
        rows, values = rows[valid], values[valid]
        if rows.numel() == 0:
            return
        sums = torch.zeros_like(self.memory).index_add_(0, rows, values.to(self.memory.dtype))
        added = torch.zeros_like(self.counts).index_add_(0, rows, torch.ones_like(rows))
        total = self.counts + added
        touched = added > 0
        old = self.memory * self.counts[:, None].to(self.memory.dtype)
        self.memory[touched] = (old[touched] + sums[touched]) / total[touched, None].to(self.memory.dtype)
        self.counts.copy_(total)

    def sample(self, pixels: torch.Tensor, pooled: torch.Tensor, assignment: torch.Tensor) -> TSASamples:
        """Random S ∪ T^f and T^t samples per image, gathered from the features with gradient.

        Args:
            pixels: ``(B, N, D)`` pixel features (with gradient).
            pooled: ``(B, D)`` image features (with gradient).
            assignment: ``(B, N)`` from :meth:`assign`.
        """
        n_f, n_t = self.num_source - 1, self.num_target
        is_f, is_t = assignment == PSEUDO_SOURCE, assignment == TRUE_TARGET
        keep = (is_f.sum(dim=1) >= n_f) & (is_t.sum(dim=1) >= n_t)  # (B,)
        noise = torch.rand(assignment.shape, device=pixels.device)  # random order within each cluster
        idx_f = torch.where(is_f, noise, -1.0)[keep].topk(n_f, dim=1).indices  # (B', n_f)
        idx_t = torch.where(is_t, noise, -1.0)[keep].topk(n_t, dim=1).indices  # (B', n_t)
        kept = pixels[keep]  # (B', N, D)
        dim = pixels.shape[2]
        fake = kept.gather(1, idx_f[..., None].expand(-1, -1, dim))  # (B', n_f, D)
        target = kept.gather(1, idx_t[..., None].expand(-1, -1, dim))  # (B', n_t, D)
        source = torch.cat([pooled[keep][:, None], fake], dim=1)  # (B', n_s, D)
        return TSASamples(source=source, target=target, keep=keep)
