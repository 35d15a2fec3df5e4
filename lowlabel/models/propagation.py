"""Label propagation through a video by feature affinity, for any frame encoder (semi-supervised VOS evaluation).

The first frame's mask is given. Every later frame gets its labels from reference frames (the first frame and the
``context`` frames before it, whose predicted soft masks wait in a queue) through the affinity of the encoder's
features::

    A = F_ref^T F_tgt                                  (N_ref, N_tgt); optionally on L2-normalised features
    A = A * A / (max_tgt A + eps) * A / (max_ref A + eps)     mutual matching (ContrastCorr's NLM_NC)
    A = -inf outside a (2r + 1)^2 window                       optional local window (CRW's radius)
    P = softmax(A / temperature over the reference cells), only the top-k per target cell kept
    labels_tgt = labels_ref P

ContrastCorr (``test.py``) does this per reference frame and averages the frames' results, keeping the top-k
softmax values without renormalising them; CRW ranks all context cells together (``joint``) and renormalises the
top-k. The soft mask at feature resolution goes into the queue; the output is upsampled bilinearly by the
encoder's stride, min-max normalised per channel (``norm_mask``), arg-maxed and resized (nearest) to the frame.

Target cells are processed ``chunk`` at a time, so memory is O(N_ref x chunk) per reference frame (plus one pass
for the mutual-matching maxima) instead of O(N_ref x N_tgt): a 100-frame 480p DAVIS sequence at stride 8 fits in a
few hundred MB whatever the chunk, with the same result as the dense computation.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

MUTUAL_EPS = 1e-5  # ContrastCorr's MutualMatching


@dataclass(frozen=True)
class PropagationConfig:
    """How labels travel from reference frames to a target frame.

    Attributes:
        topk: reference cells kept per target cell.
        context: preceding frames used besides the first frame (their predicted soft masks).
        radius: > 0: a target cell only sees reference cells within this many cells in x and in y.
        temperature: softmax temperature over reference cells (logits / temperature).
        normalize: L2-normalise features first (cosine affinity).
        mutual: mutual matching of the affinity before the softmax.
        joint: rank the cells of all reference frames together (CRW) instead of propagating from each frame and
            averaging the results (ContrastCorr).
        renormalize: rescale the kept top-k weights to sum to 1 (CRW); ContrastCorr keeps the softmax values.
        chunk: target cells per block (memory and speed only; the result does not depend on it). At 560p, 256 takes
            about a sixth of the dense memory and half its CPU time (benchmarks/README.md); smaller blocks are leaner
            still on a CPU, a GPU may prefer larger ones.
    """

    topk: int = 5
    context: int = 7
    radius: int = 0
    temperature: float = 1.0
    normalize: bool = False
    mutual: bool = True
    joint: bool = False
    renormalize: bool = False
    chunk: int = 256

    def __post_init__(self) -> None:
        if self.topk < 1 or self.context < 0 or self.radius < 0 or self.chunk < 1 or self.temperature <= 0:
            raise ValueError("propagation: topk >= 1, context >= 0, radius >= 0, chunk >= 1, temperature > 0")


#: ContrastCorr's test.py: top-5, the first + 7 preceding frames, dot-product mutual matching, temperature 1.
PAPER = PropagationConfig()
#: CRW (videowalk test.py) for comparison with that line of work: top-10, radius 12, 20 frames of context,
#: cosine affinity at temperature 0.05, all context cells ranked together.
CRW = PropagationConfig(topk=10, context=20, radius=12, temperature=0.05, normalize=True, mutual=False, joint=True,
                        renormalize=True)


def window_mask(h: int, w: int, radius: int, rows: Tensor) -> Tensor:
    """(N_ref, len(rows)) bool: reference cell within ``radius`` cells (in x and y) of each target cell in ``rows``."""
    ys, xs = torch.div(rows, w, rounding_mode="floor"), rows % w
    ref = torch.arange(h * w, device=rows.device)
    ry, rx = torch.div(ref, w, rounding_mode="floor"), ref % w
    return ((ry[:, None] - ys[None]).abs() <= radius) & ((rx[:, None] - xs[None]).abs() <= radius)


def _logits(ref: Tensor, tgt: Tensor, rows: Tensor, cfg: PropagationConfig, hw: tuple[int, int],
            ref_max: Tensor | None) -> Tensor:
    """(N_ref, n) logits of the target cells ``rows``; ``ref_max``: each reference cell's max over all targets."""
    a = ref.t() @ tgt[:, rows]
    if cfg.mutual:  # a * (a / max_tgt) * (a / max_ref), with as few full-size temporaries as possible
        assert ref_max is not None
        tgt_max = a.amax(dim=0, keepdim=True)
        scaled = a / (ref_max[:, None] + MUTUAL_EPS)
        scaled.mul_(a).mul_(a).div_(tgt_max + MUTUAL_EPS)
        a = scaled
    if cfg.temperature != 1.0:
        a.div_(cfg.temperature)
    if cfg.radius > 0:
        frames = ref.shape[1] // (hw[0] * hw[1])  # joint: the window repeats for every context frame
        mask = window_mask(hw[0], hw[1], cfg.radius, rows).repeat(frames, 1)
        a = a.masked_fill(~mask, float("-inf"))
    return a


def propagate_step(ref_feats: Tensor, ref_labels: Tensor, tgt_feats: Tensor, cfg: PropagationConfig,
                   hw: tuple[int, int]) -> Tensor:
    """Labels of one target frame from one reference set.

    Args:
        ref_feats: (C, N_ref) reference features (one frame, or several concatenated for ``joint``).
        ref_labels: (K, N_ref) their soft labels.
        tgt_feats: (C, N) target features.
        cfg: the propagation settings.
        hw: the feature map size (h, w), h * w = N.

    Returns:
        (K, N) propagated soft labels.
    """
    n = tgt_feats.shape[1]
    ref_feats = ref_feats.t().contiguous().t()  # (C, N_ref) whose transpose is contiguous: no copy per block
    ref_max = None
    if cfg.mutual:  # each reference cell's max affinity over every target cell: one pass over the chunks, reduced
        ref_max = torch.full((ref_feats.shape[1],), float("-inf"), dtype=tgt_feats.dtype, device=tgt_feats.device)
        for s in range(0, n, cfg.chunk):  # into one buffer (a list of per-block results fragments the heap)
            torch.maximum(ref_max, (ref_feats.t() @ tgt_feats[:, s:s + cfg.chunk]).amax(dim=1), out=ref_max)
    out = ref_labels.new_zeros(ref_labels.shape[0], n)
    k = min(cfg.topk, ref_feats.shape[1])
    for start in range(0, n, cfg.chunk):
        rows = torch.arange(start, min(start + cfg.chunk, n), device=tgt_feats.device)
        logits = _logits(ref_feats, tgt_feats, rows, cfg, hw, ref_max)  # (N_ref, n)
        values, index = logits.topk(k, dim=0)  # the softmax keeps the order: its top-k are the logits' top-k
        if cfg.renormalize:  # softmax over the top-k logits = the kept softmax values rescaled to sum 1
            weights = values.softmax(dim=0)
        else:  # the kept softmax values themselves: exp(logit - logsumexp over every reference cell)
            weights = (values - torch.logsumexp(logits, dim=0, keepdim=True)).exp()
        weights = torch.nan_to_num(weights)  # a target cell whose window holds no reference cell gets nothing
        out[:, start:start + len(rows)] = (ref_labels[:, index] * weights[None]).sum(dim=1)
    return out


def norm_mask(mask: Tensor) -> Tensor:
    """Per-channel min-max normalisation of (K, H, W) scores; channels whose max is not positive stay as they are."""
    out = mask.clone()
    for k in range(out.shape[0]):
        channel = out[k]
        if channel.max() > 0:
            channel = channel - channel.min()
            out[k] = channel / channel.max() if channel.max() > 0 else channel
    return out


def to_label_map(soft: Tensor, stride: int, size: tuple[int, int]) -> Tensor:
    """(K, h, w) soft labels -> (H, W) uint8 ids: upsample x ``stride`` (bilinear), ``norm_mask``, argmax, nearest
    resize to ``size``."""
    up = F.interpolate(soft[None], scale_factor=stride, mode="bilinear", align_corners=False)[0]
    ids = norm_mask(up).argmax(dim=0).to(torch.uint8)
    return F.interpolate(ids[None, None].float(), size=size, mode="nearest")[0, 0].to(torch.uint8)


def first_frame_labels(mask: Tensor, hw: tuple[int, int], num_labels: int) -> Tensor:
    """(K, h, w) one-hot of the first frame's (H, W) id map, resized to the feature size by nearest neighbour."""
    small = F.interpolate(mask[None, None].float(), size=hw, mode="nearest")[0, 0].long()
    return F.one_hot(small.clamp(max=num_labels - 1), num_labels).permute(2, 0, 1).float()


def propagate_video(encode: Callable[[Tensor], Tensor], frames: Iterable[Tensor], first_mask: Tensor, *,
                    cfg: PropagationConfig = PAPER, stride: int = 8, num_labels: int | None = None,
                    sizes: Iterable[tuple[int, int]] | None = None) -> Iterator[Tensor]:
    """Propagate ``first_mask`` through a video; yields one (H, W) uint8 id map per frame, the first one included.

    Args:
        encode: a frame (3, H', W') -> features (C, H'/stride, W'/stride); called once per frame, under no_grad.
        frames: the encoder's input frames, in order (all the same size).
        first_mask: (H, W) integer ids of frame 0 at the output size (0 = background).
        cfg: the propagation settings (:data:`PAPER`, :data:`CRW` or others).
        stride: the encoder's output stride.
        num_labels: ids 0..num_labels-1 (default: max id of ``first_mask`` + 1).
        sizes: the output size of each frame (default: ``first_mask``'s).
    """
    first_mask = first_mask.long()
    num_labels = int(first_mask.max()) + 1 if num_labels is None else num_labels
    size_iter = iter(sizes) if sizes is not None else None
    queue: deque[tuple[Tensor, Tensor]] = deque(maxlen=cfg.context)
    first: tuple[Tensor, Tensor] | None = None
    with torch.no_grad():
        for index, frame in enumerate(frames):
            out_size = next(size_iter) if size_iter is not None else tuple(first_mask.shape)
            feats = encode(frame)  # (C, h, w)
            hw = (feats.shape[1], feats.shape[2])
            flat = feats.reshape(feats.shape[0], -1).float()
            if cfg.normalize:
                flat = F.normalize(flat, dim=0)
            if index == 0:
                labels = first_frame_labels(first_mask.to(flat.device), hw, num_labels).reshape(num_labels, -1)
                first = (flat, labels)
                yield first_mask.to(torch.uint8).cpu() if out_size == tuple(first_mask.shape) else \
                    F.interpolate(first_mask[None, None].float(), size=out_size, mode="nearest")[0, 0].to(torch.uint8)
                continue
            assert first is not None
            refs = [first, *queue]
            if cfg.joint:
                soft = propagate_step(torch.cat([f for f, _ in refs], dim=1), torch.cat([lab for _, lab in refs], 1),
                                      flat, cfg, hw)
            else:
                soft = sum(propagate_step(f, lab, flat, cfg, hw) for f, lab in refs) / len(refs)
            queue.append((flat, soft))
            yield to_label_map(soft.reshape(num_labels, *hw), stride, out_size).cpu()

