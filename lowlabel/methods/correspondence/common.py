"""What the correspondence methods share: the official frame resizing and LAB input, and DAVIS evaluation by label
propagation (:mod:`lowlabel.models.propagation`) for any frame encoder, written in the DAVIS PNG layout and scored by
:class:`lowlabel.metrics.davis.DavisEvaluator`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lowlabel.data.davis import DAVIS2017
from lowlabel.data.io import save_palette_png
from lowlabel.errors import DataError
from lowlabel.metrics.davis import DavisEvaluator
from lowlabel.models.propagation import PropagationConfig, propagate_video
from lowlabel.samples import SampleKeeper, save_sample, write_per_image
from lowlabel.structures import IMAGENET_MEAN, IMAGENET_STD

STRIP_FRAMES = 5  # frames of a sequence shown in the report's propagation strip
Encoder = Callable[[Tensor], Tensor]  # (3, H, W) float input -> (C, H / stride, W / stride) features


@dataclass
class VideoDataConfig:
    """Unlabeled training video and the DAVIS-layout sequences evaluation propagates through."""

    root: str = "synth:quick"  # a DAVIS-layout folder, or synth:<preset>[:<seed>] (ShapesWorld davis/)
    clips: str = ""  # unlabeled videos (.mp4 files or frame folders, any depth); "" = <root>/clips
    crop: int = 64  # training crops, a multiple of 8 (official: 256)
    eval_split: str = "val"
    eval_sequences: int = 4  # sequences scored at each evaluation, the first ones of the split (0 = all)
    eval_short_side: int = 0  # frames resized for propagation (ContrastCorr: 560; 0 = as stored)

    def __post_init__(self) -> None:
        if self.crop % 8 or self.crop < 8:
            raise ValueError(f"data.crop must be a positive multiple of 8, got {self.crop}")


def davis_root(cfg: VideoDataConfig) -> Path:
    from lowlabel.data import resolve_root

    return Path(resolve_root(cfg.root, "davis"))


def clips_root(cfg: VideoDataConfig) -> Path:
    """The unlabeled video folder: ``data.clips``, else ``<davis root>/clips`` (ShapesWorld writes its clips there)."""
    if cfg.clips:
        path = Path(cfg.clips).expanduser()
        if not path.is_dir():
            raise DataError(f"{path}: clips folder not found (data.clips)")
        return path
    path = davis_root(cfg) / "clips"
    if not path.is_dir():
        raise DataError(f"{path}: no clips folder; set data.clips to a folder of videos or frame folders")
    return path


def eval_dataset(cfg: VideoDataConfig, split: str) -> DAVIS2017:
    """The first ``eval_sequences`` sequences of ``split``."""
    full = DAVIS2017(root=davis_root(cfg), split=split)
    keep = full.sequences if cfg.eval_sequences <= 0 else full.sequences[: cfg.eval_sequences]
    return DAVIS2017(root=davis_root(cfg), split=split, sequences=list(keep))


def lab_to_rgb(lab: Tensor) -> np.ndarray:
    """(3, H, W) LAB in [-1, 1] -> (H, W, 3) uint8 RGB (the inverse of :func:`rgb_to_lab`, values clipped)."""
    arr = (lab.detach().float().cpu().permute(1, 2, 0).numpy() * 128.0 + 128.0).clip(0, 255).round().astype(np.uint8)
    return cv2.cvtColor(arr, cv2.COLOR_LAB2RGB)


class LabCrops:
    """A video item's frames (T, 3, H, W) uint8 -> (T, 3, crop, crop) LAB in [-1, 1]: the same random crop and
    horizontal flip for every frame (frames smaller than the crop are padded with black first)."""

    def __init__(self, crop: int) -> None:
        from torchvision.transforms import v2

        self.transform = v2.Compose([v2.RandomCrop(crop, pad_if_needed=True), v2.RandomHorizontalFlip()])

    def __call__(self, frames: Tensor) -> Tensor:
        cropped = self.transform(frames)
        return torch.stack([rgb_to_lab(f.permute(1, 2, 0).numpy()) for f in cropped])


def propagation_size(h: int, w: int, short_side: int, multiple: int = 64) -> tuple[int, int]:
    """ContrastCorr's test resolution: the shorter side becomes ``short_side``, the longer one keeps the aspect and is
    floored to a multiple of ``multiple`` (DAVIS 480 x 854 at 560 -> 560 x 960). ``short_side <= 0``: unchanged."""
    if short_side <= 0:
        return h, w
    if h > w:
        return max(multiple, int(short_side * h / w) // multiple * multiple), short_side
    return short_side, max(multiple, int(short_side * w / h) // multiple * multiple)


def rgb_to_lab(frame: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float LAB in [-1, 1]: OpenCV's 8-bit LAB, then (x - 128) / 128 (official)."""
    lab = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2LAB).astype(np.float32)
    return torch.from_numpy((lab - 128.0) / 128.0).permute(2, 0, 1)


def encoder_input(lab: Tensor) -> Tensor:
    """ContrastCorr's encoder input from LAB in [-1, 1]: (x + 1) / 2, then ImageNet normalisation ((B, 3, H, W))."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=lab.dtype, device=lab.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=lab.dtype, device=lab.device).view(1, 3, 1, 1)
    return ((lab + 1.0) / 2.0 - mean) / std


def channel_dropout(ref: Tensor, tgt: Tensor, *, generator: torch.Generator | None = None,
                    keep_prob: float = 0.3) -> tuple[Tensor, Tensor, list[int]]:
    """The official colour-channel dropout (it replaces UVC's grayscale input, after CorrFlow): with probability
    ``keep_prob`` nothing happens; otherwise 1 or 2 of the 3 channels (equally likely; any channel, L included) are
    zeroed in both frames of the whole batch, and the frames are scaled by 3 / (3 - dropped).

    Returns:
        (ref, tgt, the dropped channel indices); the inputs are not modified.
    """
    if float(torch.rand((), generator=generator)) < keep_prob:
        return ref, tgt, []
    count = 1 + int(torch.randint(0, 2, (), generator=generator))
    dropped = sorted(torch.randperm(3, generator=generator)[:count].tolist())
    keep = torch.ones(1, 3, 1, 1, dtype=ref.dtype, device=ref.device)
    keep[:, dropped] = 0.0
    scale = 3.0 / (3 - count)
    return ref * keep * scale, tgt * keep * scale, dropped


def track_box(logits: Tensor, tgt_hw: tuple[int, int], size: tuple[int, int], temp: float = 1.0) -> Tensor:
    """ContrastCorr's patch-level tracking: where the reference patch went in the target frame.

    Each reference cell's expected target position is ``sum_j softmax(A * temp over target cells)_ij * (x_j, y_j)``
    (cell centres, in cells); the box of ``size`` = (h, w) cells is centred on the mean of those positions, shifted
    to lie inside the target map when it can (clipped when the map is smaller).

    Args:
        logits: (B, N_ref, N_tgt) affinity logits.
        tgt_hw: the target feature map's (h, w).
        size: the box size in cells (the reference patch's feature size).

    Returns:
        (B, 4) boxes ``(x0, y0, x1, y1)`` in cell units (continuous; x1 - x0 = w).
    """
    h, w = tgt_hw
    ys, xs = torch.meshgrid(torch.arange(h, dtype=logits.dtype, device=logits.device) + 0.5,
                            torch.arange(w, dtype=logits.dtype, device=logits.device) + 0.5, indexing="ij")
    grid = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)  # (N_tgt, 2)
    centre = (torch.softmax(logits * temp, dim=2) @ grid).mean(dim=1)  # (B, 2)
    bh, bw = size
    x0 = (centre[:, 0] - bw / 2).clamp(min=0.0)
    y0 = (centre[:, 1] - bh / 2).clamp(min=0.0)
    x0 = torch.minimum(x0, torch.full_like(x0, max(w - bw, 0)))
    y0 = torch.minimum(y0, torch.full_like(y0, max(h - bh, 0)))
    return torch.stack([x0, y0, x0 + bw, y0 + bh], dim=1)


def crop_boxes(feats: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """A differentiable crop of each map (B, C, h, w) at its box (B, 4) (cell units), resampled bilinearly to
    ``size`` = (h', w') cells: the value at each output cell centre (``torchvision.ops.roi_align``, aligned)."""
    from torchvision.ops import roi_align

    rois = torch.cat([torch.arange(len(boxes), dtype=boxes.dtype, device=boxes.device)[:, None], boxes], dim=1)
    return roi_align(feats, rois, output_size=size, spatial_scale=1.0, sampling_ratio=1, aligned=True)


def pixel_encoder(stride: int) -> Encoder:
    """The raw-pixel baseline: LAB values averaged over ``stride`` x ``stride`` cells, no learning."""
    def encode(lab: Tensor) -> Tensor:
        return F.avg_pool2d(lab[None], stride)[0]
    return encode


def _inputs(frames: np.ndarray, size: tuple[int, int], prepare: Callable[[np.ndarray], Tensor]) -> Any:
    """The encoder inputs of (T, H, W, 3) uint8 ``frames`` resized (bilinear) to ``size``, one at a time."""
    h, w = frames.shape[1:3]
    for frame in frames:
        resized = frame if size == (h, w) else cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
        yield prepare(resized)


def evaluate_davis(encode: Encoder, dataset: DAVIS2017, out_dir: Path, *, cfg: PropagationConfig, stride: int,
                   short_side: int = 0, prepare: Callable[[np.ndarray], Tensor] = rgb_to_lab,
                   progress: Callable[[str], None] | None = None, samples_dir: Path | None = None,
                   num_samples: int = 3) -> dict[str, Any]:
    """Propagate each sequence's first mask, write ``out_dir/<seq>/<frame>.png`` (palette PNGs, as DAVIS results),
    score them with the DAVIS-2017 protocol. For the report, ``samples_dir`` (when given) gets ``per_image.csv`` (J&F
    per sequence) and ``samples/`` strips of :data:`STRIP_FRAMES` frames of the first and the worst ``num_samples``
    sequences (kind ``propagation``).

    Args:
        encode: the frame encoder (called under no_grad, one frame at a time).
        dataset: the sequences (DAVIS or ShapesWorld ``davis/``).
        out_dir: results folder.
        cfg: propagation settings.
        stride: the encoder's output stride.
        short_side: frames are resized for the encoder by :func:`propagation_size` (0 = as stored).
        prepare: (H, W, 3) uint8 frame -> encoder input (default LAB in [-1, 1]).
        progress: called with each sequence name.

    Returns:
        ``{"metrics": {"J&F-Mean": ..., ...} in percent, "per_sequence": {seq_k: {"J-Mean", "F-Mean"}}}``.
    """
    evaluator = DavisEvaluator()
    out_dir = Path(out_dir)
    keeper = SampleKeeper(dataset.sequences, num_samples, num_samples)
    scores = {}
    for index in range(len(dataset)):
        item = dataset[index]
        name = item["name"]
        if progress is not None:
            progress(name)
        frames = item["frames"].permute(0, 2, 3, 1).numpy()  # (T, H, W, 3) uint8
        h, w = frames.shape[1:3]
        size = propagation_size(h, w, short_side)

        first = item["masks"][0].long()
        first = torch.where(first == 255, torch.zeros_like(first), first)
        preds = []
        predicted = propagate_video(encode, _inputs(frames, size, prepare), first, cfg=cfg, stride=stride,
                                    num_labels=item["num_objects"] + 1, sizes=[(h, w)] * len(frames))
        for frame_name, pred in zip(item["frame_names"], predicted):
            save_palette_png(out_dir / name / f"{frame_name}.png", pred.numpy())
            preds.append(pred.numpy())
        before = set(evaluator.per_object)
        evaluator.update(name, item["masks"].numpy(), np.stack(preds))
        objects = [evaluator.per_object[k] for k in evaluator.per_object if k not in before]
        scores[name] = 100.0 * float(np.mean([(o["J-Mean"] + o["F-Mean"]) / 2 for o in objects])) if objects else 0.0
        picks = np.linspace(0, len(frames) - 1, min(STRIP_FRAMES, len(frames))).round().astype(int)
        keeper.offer(name, scores[name], {"image": frames[0], "frames": frames[picks], "pred": np.stack(preds)[picks],
                                          "gt": item["masks"].numpy()[picks],
                                          "frame_names": np.asarray(item["frame_names"])[picks]})
    if samples_dir is not None:
        for name, arrays in keeper.chosen():
            save_sample(samples_dir, name, "propagation", label=f"J&F {scores[name]:.1f}", **arrays)
        write_per_image(samples_dir, scores)
    metrics = {k: 100.0 * v for k, v in evaluator.compute().items()}
    per_sequence = {k: {m: 100.0 * o[m] for m in ("J-Mean", "F-Mean")} for k, o in evaluator.per_object.items()}
    return {"metrics": metrics, "per_sequence": per_sequence}
