"""LGCL's losses as tensor operations: LSGAN, CUT's multi-layer PatchNCE and the local-global contrastive loss on G_A.

LGCL, BMVC 2024, arXiv:2410.05058; the generator objective is ``L_G = L_adv + L^NCE + L_{G_A}`` (unit weights as
printed). Every random choice (patch ids, crop boxes, shuffles) is an argument; the ``sample_*`` helpers draw them.

* :func:`lsgan_d_loss`, :func:`lsgan_g_loss`: CUT's default ``gan_mode=lsgan`` (Mao et al., ICCV 2017, targets 1 for
  real and 0 for fake): ``L_D = 0.5 (mean (D(y) - 1)^2 + mean D(G(x))^2)``, ``L_G = mean (D(G(x)) - 1)^2``.
* :func:`patch_nce`, :func:`multilayer_patch_nce`: CUT's ``PatchNCELoss`` with ``nce_T=0.07``, ``num_patches=256``
  and negatives from the same image only. Per layer, the same spatial ids pick S feature-map locations of the query
  image G(x) and of the key image x (ids shared by the batch); both go through that layer's head; for query patch i
  the logits are ``[q_i . k_i, q_i . k_j (j != i)] / tau`` with the self pair of the negatives filled with -10 before
  the division, and the loss is the cross-entropy with the positive at index 0. Keys are detached. Mean over B x S
  patches, then over layers.
* :func:`info_nce`, :func:`local_global_loss`: the DetCo-style loss on (E_B, G_A), per layer i of
  :func:`lowlabel.models.lgcl_nets.lg_features` with weight w_i (1.0, 0.7, 0.4, 0.1 on E_B c(4w), G_A u(2w), u(w),
  logits: the weights grow with the feature stride, as DetCo's do from res2 to res5)::

      L_{G_A} = sum_i w_i (NCE(g_i(x1), gm_i(x2); Qg_i) + NCE(l_i(P1), gm_i(x2); Qg_i) + NCE(l_i(P1), lm_i(P2); Ql_i))

  where g / l are the global / local heads, gm / lm those of the momentum branch (keys, no gradient), and
  Qg_i / Ql_i are the queues of earlier global / local keys of layer i (:class:`NegativeQueue`). The g<->l term
  takes the negatives of its key's kind (global). MoCo v2 / DetCo defaults, not given for LGCL: tau = 0.2,
  momentum 0.999, 65536 negatives per queue.
* :func:`local_patches`: a crop of each view (>= 60 % of the image area, PIRL) resized and cut into a 4 x 4 grid; the
  16 patches come back in a given shuffled order.
* :func:`momentum_copy`, :func:`ema_update`: the momentum branch, ``theta_m <- m theta_m + (1 - m) theta``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NCE_TAU = 0.07  # CUT --nce_T
NUM_PATCHES = 256  # CUT --num_patches
SELF_FILL = -10.0  # CUT fills the self pair among the negatives with -10 before dividing by tau
LG_TAU = 0.2  # MoCo v2 / DetCo
LG_MOMENTUM = 0.999  # MoCo / DetCo
QUEUE_SIZE = 65536  # MoCo / DetCo K, one queue per kind (global, local) and layer
LG_LAYER_WEIGHTS = (1.0, 0.7, 0.4, 0.1)  # LGCL supp.'s weights, growing with the stride of lg_features' layers
GRID = 4  # 4 x 4 local patches (LGCL supp. section 6.4)
MIN_CROP_AREA = 0.6  # the local crop covers >= 60 % of the image (LGCL supp., after PIRL)

M = TypeVar("M", bound=nn.Module)


def lsgan_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """``0.5 * (mean((D(y) - 1)^2) + mean(D(G(x))^2))`` of D's raw scores on real and (detached) fake images."""
    return 0.5 * (((real - 1.0) ** 2).mean() + (fake**2).mean())


def lsgan_g_loss(fake: Tensor) -> Tensor:
    """``mean((D(G(x)) - 1)^2)``: the generator wants its images scored as real (CUT's lambda_GAN = 1 is outside)."""
    return ((fake - 1.0) ** 2).mean()


def sample_patch_ids(feats: Sequence[Tensor], num_patches: int = NUM_PATCHES,
                     generator: torch.Generator | None = None) -> list[Tensor]:
    """Per layer, ``min(num_patches, h * w)`` distinct row-major locations of its (B, C, h, w) map, in random order
    (CUT's ``PatchSampleF``). Drawn on the CPU (CUT avoids ``randperm`` on CUDA), returned on the features' device."""
    ids = []
    for f in feats:
        n = f.shape[2] * f.shape[3]
        ids.append(torch.randperm(n, generator=generator)[: min(num_patches, n)].to(f.device))
    return ids


def gather_patches(feat: Tensor, ids: Tensor) -> Tensor:
    """(B, C, h, w) features at row-major locations ``ids`` (S,) -> (B, S, C); location ``p`` is (p // w, p % w)."""
    if ids.dim() != 1 or (ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= feat.shape[2] * feat.shape[3])):
        raise ValueError(f"patch ids must be a 1-D tensor in [0, {feat.shape[2] * feat.shape[3]}), got {ids}")
    return feat.flatten(2).index_select(2, ids).transpose(1, 2)  # (B, C, h*w) -> (B, C, S) -> (B, S, C)


def patch_nce(q: Tensor, k: Tensor, tau: float = NCE_TAU) -> Tensor:
    """CUT's PatchNCE on one layer, negatives from the same image, mean over the B x S query patches.

    Args:
        q: (B, S, D) projected query patches (of G(x)), unit norm.
        k: (B, S, D) projected key patches (of x) at the same locations, unit norm; detached here.
        tau: temperature.
    """
    if q.shape != k.shape or q.dim() != 3:
        raise ValueError(f"patch_nce needs equal (B, S, D) shapes, got {tuple(q.shape)}, {tuple(k.shape)}")
    k = k.detach()
    s = q.shape[1]
    l_pos = (q * k).sum(dim=2, keepdim=True)  # (B, S, 1)
    l_neg = q @ k.transpose(1, 2)  # (B, S, S): query i against key j of the same image
    self_pair = torch.eye(s, dtype=torch.bool, device=q.device)
    l_neg = l_neg.masked_fill(self_pair, SELF_FILL)
    logits = torch.cat([l_pos, l_neg], dim=2) / tau  # (B, S, 1 + S)
    target = torch.zeros(q.shape[0] * s, dtype=torch.long, device=q.device)
    return F.cross_entropy(logits.flatten(0, 1), target)  # (B*S, 1 + S)


def multilayer_patch_nce(feats_q: Sequence[Tensor], feats_k: Sequence[Tensor], patch_ids: Sequence[Tensor],
                         heads: Sequence[Callable[[Tensor], Tensor]] | nn.ModuleList,
                         tau: float = NCE_TAU) -> Tensor:
    """PatchNCE averaged over layers.

    Args:
        feats_q: per layer, (B, C_l, h_l, w_l) encoder features of the translated image G(x).
        feats_k: per layer, the same-shaped features of the input x.
        patch_ids: per layer, (S_l,) row-major locations, shared by query, key and batch (:func:`sample_patch_ids`).
        heads: per layer, (..., C_l) -> (..., D) unit-norm projection (``lgcl_nets.patch_heads``), applied to both.
        tau: temperature.
    """
    if not len(feats_q) == len(feats_k) == len(patch_ids) == len(heads) > 0:
        raise ValueError(f"multilayer_patch_nce needs one query map, key map, id set and head per layer; got "
                         f"{len(feats_q)}, {len(feats_k)}, {len(patch_ids)}, {len(heads)}")
    total = feats_q[0].new_zeros(())
    for f_q, f_k, ids, head in zip(feats_q, feats_k, patch_ids, heads):
        if f_q.shape != f_k.shape:
            raise ValueError(f"query and key features differ in shape: {tuple(f_q.shape)} vs {tuple(f_k.shape)}")
        total = total + patch_nce(head(gather_patches(f_q, ids)), head(gather_patches(f_k, ids)), tau)
    return total / len(feats_q)


def info_nce(q: Tensor, k: Tensor, negatives: Tensor, tau: float = LG_TAU) -> Tensor:
    """MoCo's InfoNCE: mean over n of ``-log softmax([q . k, q . negatives_j] / tau)[0]``.

    Args:
        q: (n, D) queries, unit norm.
        k: (n, D) their positive keys, unit norm; detached here.
        negatives: (K, D) shared negative keys (a queue), unit norm; detached here.
        tau: temperature.
    """
    if q.shape != k.shape or q.dim() != 2 or negatives.dim() != 2 or negatives.shape[1] != q.shape[1]:
        raise ValueError(f"info_nce needs q, k (n, D) and negatives (K, D); got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(negatives.shape)}")
    l_pos = (q * k.detach()).sum(dim=1, keepdim=True)  # (n, 1)
    l_neg = q @ negatives.detach().t()  # (n, K)
    logits = torch.cat([l_pos, l_neg], dim=1) / tau  # (n, 1 + K)
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


@dataclass
class LocalGlobalTerms:
    """``total`` = sum_i w_i (gg_i + gl_i + ll_i); ``gg``, ``gl``, ``ll`` are the unweighted (L,) per-layer terms."""

    total: Tensor
    gg: Tensor
    gl: Tensor
    ll: Tensor


def local_global_loss(q_global: Sequence[Tensor], q_local: Sequence[Tensor], k_global: Sequence[Tensor],
                      k_local: Sequence[Tensor], global_negatives: Sequence[Tensor],
                      local_negatives: Sequence[Tensor], *, weights: Sequence[float] = LG_LAYER_WEIGHTS,
                      tau: float = LG_TAU) -> LocalGlobalTerms:
    """L_{G_A} over L layers (module docstring); every sequence has one (B, D) / (K, D) entry per layer, shallow first.

    Args:
        q_global: global query embeddings g_i(x1) (``LocalGlobalHeads.embed_global``, query branch).
        q_local: local query embeddings l_i(P1) (``embed_local``, query branch).
        k_global: global key embeddings gm_i(x2) (momentum branch).
        k_local: local key embeddings lm_i(P2) (momentum branch).
        global_negatives: per layer, the global queue (K, D).
        local_negatives: per layer, the local queue (K, D).
        weights: w_i per layer.
        tau: temperature.
    """
    n = len(weights)
    if not all(len(s) == n for s in (q_global, q_local, k_global, k_local, global_negatives, local_negatives)):
        raise ValueError(f"local_global_loss needs {n} layers (one per weight) in every argument")
    gg = torch.stack([info_nce(q, k, neg, tau) for q, k, neg in zip(q_global, k_global, global_negatives)])
    gl = torch.stack([info_nce(q, k, neg, tau) for q, k, neg in zip(q_local, k_global, global_negatives)])
    ll = torch.stack([info_nce(q, k, neg, tau) for q, k, neg in zip(q_local, k_local, local_negatives)])
    w = torch.as_tensor(weights, dtype=gg.dtype, device=gg.device)  # (L,)
    return LocalGlobalTerms(total=(w * (gg + gl + ll)).sum(), gg=gg, gl=gl, ll=ll)


def sample_crop_boxes(batch: int, height: int, width: int, *, min_area: float = MIN_CROP_AREA,
                      generator: torch.Generator | None = None) -> Tensor:
    """(batch, 4) int64 crop boxes ``x0, y0, x1, y1`` (x1, y1 exclusive) with the image's aspect ratio and an area
    fraction drawn uniformly in [min_area, 1] (sides scaled by its square root), placed uniformly in the image."""
    if not 0.0 < min_area <= 1.0:
        raise ValueError(f"min_area must be in (0, 1], got {min_area}")
    area = min_area + (1.0 - min_area) * torch.rand(batch, generator=generator, dtype=torch.float64)  # (B,)
    boxes = []
    for a, u, v in zip(area.tolist(), *torch.rand(2, batch, generator=generator, dtype=torch.float64).tolist()):
        h = min(height, max(1, math.ceil(math.sqrt(a) * height)))
        w = min(width, max(1, math.ceil(math.sqrt(a) * width)))
        y0, x0 = int(v * (height - h + 1)), int(u * (width - w + 1))
        boxes.append([x0, y0, x0 + w, y0 + h])
    return torch.tensor(boxes, dtype=torch.long).view(batch, 4)


def sample_shuffles(batch: int, cells: int = GRID * GRID, generator: torch.Generator | None = None) -> Tensor:
    """(batch, cells) int64: one random permutation of the grid cells per image."""
    return torch.stack([torch.randperm(cells, generator=generator) for _ in range(batch)]).view(batch, cells)


def local_patches(x: Tensor, boxes: Tensor, shuffles: Tensor, *, patch_hw: tuple[int, int],
                  grid: int = GRID) -> Tensor:
    """The shuffled grid patches of a crop of each image.

    Each crop is resized bilinearly to (grid * ph, grid * pw) (not resampled if it has that size already) and cut
    into grid x grid cells, numbered row-major; output j of image b is cell ``shuffles[b, j]``.

    Args:
        x: (B, C, H, W) images (a view after augmentation).
        boxes: (B, 4) integer crop boxes ``x0, y0, x1, y1``, x1 and y1 exclusive (:func:`sample_crop_boxes`).
        shuffles: (B, grid^2) a permutation of the cells per image (:func:`sample_shuffles`).
        patch_hw: (ph, pw) size of one patch (multiples of 4 for the translator).
        grid: cells per side.

    Returns:
        (B, grid^2, C, ph, pw).
    """
    b, c = x.shape[:2]
    ph, pw = patch_hw
    cells = grid * grid
    if boxes.shape != (b, 4) or shuffles.shape != (b, cells):
        raise ValueError(f"need boxes (B, 4) and shuffles (B, {cells}); got {tuple(boxes.shape)}, "
                         f"{tuple(shuffles.shape)}")
    if not all(torch.equal(torch.sort(s).values, torch.arange(cells)) for s in shuffles.cpu()):
        raise ValueError(f"every row of shuffles must be a permutation of 0..{cells - 1}")
    out = []
    for img, (x0, y0, x1, y1), perm in zip(x, boxes.tolist(), shuffles):
        if not (0 <= x0 < x1 <= x.shape[3] and 0 <= y0 < y1 <= x.shape[2]):
            raise ValueError(f"crop box {(x0, y0, x1, y1)} is empty or outside the {tuple(x.shape[2:])} image")
        crop = img[:, y0:y1, x0:x1]
        if crop.shape[1:] != (grid * ph, grid * pw):
            crop = F.interpolate(crop[None], size=(grid * ph, grid * pw), mode="bilinear", align_corners=False)[0]
        patches = crop.reshape(c, grid, ph, grid, pw).permute(1, 3, 0, 2, 4)  # (grid_y, grid_x, C, ph, pw)
        out.append(patches.reshape(cells, c, ph, pw)[perm.to(x.device)])  # row-major cells, then shuffled
    return torch.stack(out)  # (B, cells, C, ph, pw)


def momentum_copy(module: M) -> M:
    """A frozen deep copy of ``module`` to serve as its momentum (EMA) copy."""
    ema = copy.deepcopy(module)
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def ema_update(ema: nn.Module, module: nn.Module, momentum: float = LG_MOMENTUM) -> None:
    """``theta_m <- m * theta_m + (1 - m) * theta`` for every parameter; buffers are copied (MoCo's key encoder)."""
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    params, src = dict(ema.named_parameters()), dict(module.named_parameters())
    buffers, src_buffers = dict(ema.named_buffers()), dict(module.named_buffers())
    if params.keys() != src.keys() or buffers.keys() != src_buffers.keys():
        raise ValueError("ema_update needs two modules with the same parameter and buffer names")
    for name, p in src.items():
        params[name].mul_(momentum).add_(p.detach(), alpha=1.0 - momentum)
    for name, b in src_buffers.items():
        buffers[name].copy_(b)


class NegativeQueue(nn.Module):
    """A fixed-size FIFO of negative keys (MoCo's queue), initialised with random unit vectors as MoCo does.

    ``entries`` (size, dim) is used as the negatives as it stands (the order does not matter to InfoNCE);
    ``ordered()`` lists it oldest first. ``enqueue`` overwrites the oldest rows and returns them (the dequeued keys).

    Args:
        size: K.
        dim: key dimension.
        persistent: keep the queue in ``state_dict`` so that a resumed run continues with the same negatives (the
            style guide's lightly default is False; a resume that is exact matters more here than checkpoint size).
        generator: for the random initial entries.
    """

    entries: Tensor
    ptr: Tensor

    def __init__(self, *, size: int = QUEUE_SIZE, dim: int = 128, persistent: bool = True,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if size < 1 or dim < 1:
            raise ValueError(f"queue size and dim must be >= 1, got size={size}, dim={dim}")
        init = F.normalize(torch.randn(size, dim, generator=generator), dim=1)
        self.register_buffer("entries", init, persistent=persistent)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long), persistent=persistent)  # next row to write

    @property
    def size(self) -> int:
        return self.entries.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: Tensor) -> Tensor:
        """Write ``keys`` (n, dim), n <= size, over the n oldest rows (wrapping around); returns those old rows."""
        n = keys.shape[0]
        if keys.dim() != 2 or keys.shape[1] != self.entries.shape[1] or n > self.size:
            raise ValueError(f"enqueue needs (n <= {self.size}, {self.entries.shape[1]}) keys, got {tuple(keys.shape)}")
        rows = (int(self.ptr) + torch.arange(n, device=self.entries.device)) % self.size  # (n,)
        dequeued = self.entries[rows].clone()
        self.entries[rows] = keys.detach().to(self.entries.dtype)
        self.ptr.fill_((int(self.ptr) + n) % self.size)
        return dequeued

    def ordered(self) -> Tensor:
        """(size, dim) the entries oldest first."""
        return torch.roll(self.entries, -int(self.ptr), dims=0)

    def forward(self) -> Tensor:
        return self.entries
