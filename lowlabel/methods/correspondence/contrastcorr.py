"""ContrastCorr: contrastive transformation for self-supervised correspondence (Wang, Zhou, Li; AAAI 2021).

A frame encoder learns dense correspondence from unlabeled video by reconstructing a frame's colours from another
frame through the affinity of their features (``594422814/ContrastCorr``; the tensor pieces are in
:mod:`lowlabel.losses.contrastcorr`):

* **Intra-video stage** (the first ``contrastcorr.warmup_steps`` steps): two frames of a video, the same random
  ``data.crop`` box of both. ``A = F_ref^T F_tgt``; the frozen colour autoencoder's features of the reference are
  carried by ``softmax(A * temp)`` over reference cells and decoded into the target (LAB L1, L x 1, a/b x 10); the
  backward copy (the target's colour features through the transposed weights, x 0.1); the reference rebuilt from
  itself (diagonal masked); from ``conc_start`` the concentration loss (x 0.3). Samples whose loss exceeds 2.5
  count as 0 (outlier rejection), except in the first ``reject_after`` steps of each stage.
* **Second stage**: patch-level tracking builds the positive pairs. A ``crop`` patch of the reference (the frames
  first resized and padded to ``full`` x ``full``) is located in the whole target (mean expected position under
  softmax over target cells), the target features, colour features and image are cropped there (bilinear), and the
  intra-video losses are computed on that pair. The **inter-video contrastive transformation** lets each target cell
  attend over the reference cells of every video in the batch: its reconstruction must match the intra-video one
  (consistency) and its attention mass must stay in its own video (sparsity, x ``sparsity_weight``). It is computed
  in chunks of target cells (:func:`~lowlabel.losses.contrastcorr.inter_video_transform`), never as the dense
  (B*N)^2 matrix.

The encoder input is LAB mapped to [0, 1] and ImageNet-normalised, with the official colour-channel dropout. The
colour autoencoder is the first stage, ``lowlabel train contrastcorr_ae``, named by ``init_from`` and held frozen.
Evaluation propagates the first-frame masks of the first ``data.eval_sequences`` DAVIS-layout sequences
(:mod:`lowlabel.models.propagation`, the paper's or CRW's settings) and reports J&F in percent, which picks the best
checkpoint. ``contrastcorr.use_inter false`` is the paper's intra-only ablation.

Deviations, deliberate: the learning rate follows one schedule over both stages (the official step schedule restarts
at stage 2); frames are resized and padded to ``full`` for both stages (the official first stage crops frames
resized to multiples of 64); the tracked box is not differentiated; augmentation is the crop and a flip (the
official also rotates by up to 10 degrees and scales by 1.2).

    lowlabel train contrastcorr_ae --config configs/contrastcorr_ae/synth-quick.yaml --run-dir runs/ae
    lowlabel train contrastcorr --config configs/contrastcorr/synth-quick.yaml --init_from runs/ae
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lowlabel.data.io import load_rgb
from lowlabel.data.video import VideoClips
from lowlabel.errors import UserError
from lowlabel.losses import contrastcorr as L
from lowlabel.methods.base import EvalResult, ExportNet, Frozen, OptimConfig, StepOutput, TrainerConfig, build_optimizer
from lowlabel.methods.correspondence.common import (
    VideoDataConfig,
    channel_dropout,
    clips_root,
    crop_boxes,
    encoder_input,
    eval_dataset,
    evaluate_davis,
    rgb_to_lab,
    track_box,
)
from lowlabel.models.correspondence_nets import ENCODERS, ColourAutoencoder, frame_encoder
from lowlabel.models.propagation import CRW, PAPER
from lowlabel.models.weights import read_stage, single_network
from lowlabel.structures import Image

STRIDE = 8


@dataclass
class CCDataConfig(VideoDataConfig):
    """``VideoDataConfig`` plus the frame pairs: ``crop`` is the patch (official 256), ``full`` the side the frames
    are resized (longer side) and padded to (official 640), ``max_gap`` the largest frame distance (official 50)."""

    full: int = 128
    max_gap: int = 10
    samples_per_video: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.full % STRIDE or self.full < self.crop:
            raise ValueError(f"data.full must be a multiple of 8 and >= data.crop, got {self.full}")


@dataclass
class CCModelConfig:
    encoder: str = "resnet_small"  # resnet18_os8 (paper) or resnet_small (ShapesWorld)
    width: int = 32  # resnet_small's first-stage width
    pretrained: str = ""  # "" = from scratch (the paper); a torchvision file, a lowlabel run or synth:pretrain

    def __post_init__(self) -> None:
        if self.encoder not in ENCODERS:
            raise ValueError(f"model.encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}")


@dataclass
class CCParams:
    """The method's constants (official values; steps where the official code counts epochs)."""

    warmup_steps: int = 100  # intra-video stage length (official: 100 of 200 epochs)
    temp: float = 1.0
    backward_weight: float = 0.1  # the backward ("colour switch") reconstruction
    conc_weight: float = 0.3
    conc_start: int = 10  # step from which the concentration loss is on (official: epoch 10)
    conc_window: int = 8  # cells per window side and stride (8 on the official 32 x 32 maps)
    outlier_threshold: float = 2.5
    reject_after: int = 0  # steps at the start of each stage without outlier rejection (official: 1 and 2 epochs)
    use_inter: bool = True  # the inter-video contrastive transformation (false: the intra-only ablation)
    consistency_weight: float = 1.0
    sparsity_weight: float = 1.0  # the official --contrastive
    chunk: int = 1024  # target cells per block of the inter-video affinity
    propagation: str = "paper"  # evaluation: paper (top-5, first + 7) or crw (top-10, radius 12, 20)

    def __post_init__(self) -> None:
        if self.propagation not in ("paper", "crw"):
            raise ValueError(f"contrastcorr.propagation must be paper or crw, got {self.propagation!r}")


@dataclass
class ContrastCorrConfig:
    """Config of ``lowlabel train contrastcorr``."""

    data: CCDataConfig = field(default_factory=CCDataConfig)
    model: CCModelConfig = field(default_factory=CCModelConfig)
    contrastcorr: CCParams = field(default_factory=CCParams)
    init_from: str = ""  # the contrastcorr_ae run (or weights) of the colour autoencoder, held frozen
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="adam", lr=1e-4, weight_decay=0.0))
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_steps=200, batch_size=8))


CONFIG = ContrastCorrConfig


class ResizePad:
    """A video item's frames (T, 3, H, W) uint8 -> (T, 3, full, full) LAB in [-1, 1]: the longer side resized to
    ``full``, the rest padded with 0 (mid grey in normalised LAB); one random horizontal flip for all frames."""

    def __init__(self, full: int) -> None:
        self.full = full

    def __call__(self, frames: Tensor) -> Tensor:
        t, _, h, w = frames.shape
        scale = self.full / max(h, w)
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        resized = F.interpolate(frames.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
        resized = resized.round().clamp(0, 255).to(torch.uint8)
        if bool(torch.rand(()) < 0.5):
            resized = resized.flip(-1)
        lab = torch.stack([rgb_to_lab(f.permute(1, 2, 0).numpy()) for f in resized])
        return F.pad(lab, (0, self.full - size[1], 0, self.full - size[0]))


def random_boxes(batch: int, full: int, crop: int) -> list[tuple[int, int]]:
    """One random top-left corner (y, x) per sample, on the 8-pixel grid, for a ``crop`` box inside ``full``."""
    cells = (full - crop) // STRIDE + 1
    return [(int(torch.randint(cells, ())) * STRIDE, int(torch.randint(cells, ())) * STRIDE) for _ in range(batch)]


def take(images: Tensor, corners: list[tuple[int, int]], crop: int) -> Tensor:
    return torch.stack([img[:, y:y + crop, x:x + crop] for img, (y, x) in zip(images, corners)])


def load_colour_ae(init_from: str) -> Frozen:
    """The frozen colour autoencoder of a ``contrastcorr_ae`` run (or its weights file)."""
    if not init_from:
        raise UserError("contrastcorr: init_from is empty; train the colour autoencoder first "
                        "(lowlabel train contrastcorr_ae ...) and pass its run folder as --init_from")
    weights = read_stage(init_from, stage="contrastcorr", accepts=("contrastcorr_ae",))
    try:
        state = single_network(weights, weights.file)
    except ValueError as err:
        raise UserError(str(err)) from None
    channels = int(state["encoder.6.0.weight"].shape[0]) if "encoder.6.0.weight" in state else None
    if channels is None:
        raise UserError(f"{weights.file}: not a colour autoencoder (no encoder.6.0.weight)")
    module = ColourAutoencoder(channels=channels)
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise UserError(f"{weights.file}: does not fit a colour autoencoder ({str(err).splitlines()[0]})") from None
    module.requires_grad_(False).eval()  # as the engine keeps it; also when the method is used outside the engine
    return Frozen(module=module, source=str(weights.file), sha256=weights.sha256())


class ContrastCorr:
    """The ContrastCorr method."""

    name = "contrastcorr"

    def __init__(self, *, config: ContrastCorrConfig) -> None:
        self.config = config
        m = config.model
        self.encoder = frame_encoder(m.encoder, width=m.width, pretrained=m.pretrained)
        self.colour = load_colour_ae(config.init_from)

    def networks(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder}

    def frozen_networks(self) -> dict[str, Frozen]:
        return {"colour": self.colour}

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {"encoder": build_optimizer(nets["encoder"].parameters(), self.config.optim)}

    def train_dataset(self) -> torch.utils.data.Dataset:
        d = self.config.data
        return VideoClips(root=clips_root(d), num_frames=2, min_gap=1, max_gap=d.max_gap,
                          samples_per_video=d.samples_per_video, transforms=ResizePad(d.full))

    def collate(self, items: list[dict[str, Any]]) -> Tensor:
        return torch.stack([item["frames"] for item in items])  # (B, 2, 3, full, full) LAB

    # -- training ----------------------------------------------------------------------------------------------
    def _features(self, encoder: nn.Module, ref: Tensor, tgt: Tensor) -> tuple[Tensor, Tensor]:
        x_ref, x_tgt, _ = channel_dropout(encoder_input(ref), encoder_input(tgt))
        return encoder(x_ref), encoder(x_tgt)

    def _intra(self, colour: ColourAutoencoder, logits: Tensor, feats_ref: Tensor, lab_ref: Tensor, lab_tgt: Tensor,
               col_ref: Tensor, col_tgt: Tensor, hw: tuple[int, int], step: int, stage_start: int
               ) -> tuple[Tensor, Tensor, dict[str, float]]:
        """The intra-video losses of one (reference, target) pair of cell maps; returns (loss, decoded target, logs)."""
        p = self.config.contrastcorr
        b, d = col_ref.shape[:2]
        weights = torch.softmax(logits * p.temp, dim=1)  # (B, N_ref, N_tgt)
        tgt_est = colour.decode((col_ref.flatten(2) @ weights).view(b, d, *hw))
        ref_est = colour.decode((col_tgt.flatten(2) @ weights.transpose(1, 2)).view(b, d, *hw))
        self_est = colour.decode(L.affinity_transform(L.self_affinity(feats_ref), col_ref.flatten(2)).view(b, d, *hw))
        threshold = p.outlier_threshold if step - stage_start >= p.reject_after else None
        fwd, bwd = L.lab_l1(tgt_est, lab_tgt), L.lab_l1(ref_est, lab_ref)
        switch = fwd + p.backward_weight * bwd
        if threshold is not None:  # the official switch_L1_thr: a sample is rejected by its forward loss
            switch = torch.where(fwd > threshold, torch.zeros_like(switch), switch)
        l_switch = switch.mean()
        l_self = L.reject_outliers(L.lab_l1(self_est, lab_ref), threshold)
        loss = l_switch + l_self
        logs = {"rec": float(l_switch.detach()), "self": float(l_self.detach())}
        if step >= p.conc_start and min(hw) >= p.conc_window:
            l_conc = L.concentration_loss(logits, hw, window=p.conc_window, stride=p.conc_window, temp=p.temp)
            loss = loss + p.conc_weight * l_conc
            logs["conc"] = float(l_conc.detach())
        return loss, tgt_est, logs

    def training_step(self, nets: Mapping[str, nn.Module], batch: Tensor, step: int) -> StepOutput:
        cfg, p = self.config.data, self.config.contrastcorr
        encoder, colour = nets["encoder"], nets["colour"]
        lab_ref_full, lab_tgt_full = batch[:, 0], batch[:, 1]
        b = batch.shape[0]
        crop_cells = cfg.crop // STRIDE
        hw = (crop_cells, crop_cells)
        if step < p.warmup_steps:  # intra-video stage: the same box in both frames
            corners = random_boxes(b, cfg.full, cfg.crop)
            lab_ref, lab_tgt = take(lab_ref_full, corners, cfg.crop), take(lab_tgt_full, corners, cfg.crop)
            f_ref, f_tgt = self._features(encoder, lab_ref, lab_tgt)
            with torch.no_grad():
                col_ref, col_tgt = colour.encode(lab_ref), colour.encode(lab_tgt)
            logits = L.affinity(f_ref.flatten(2), f_tgt.flatten(2))
            loss, _, logs = self._intra(colour, logits, f_ref.flatten(2), lab_ref, lab_tgt, col_ref, col_tgt, hw,
                                        step, 0)
            logs["stage"] = 1.0
            return StepOutput(losses={"encoder": loss}, logs={"loss": float(loss.detach()), **logs})
        # second stage: track a reference patch in the whole target, then intra + inter-video losses on the pair
        corners = random_boxes(b, cfg.full, cfg.crop)
        lab_ref = take(lab_ref_full, corners, cfg.crop)
        f_ref, f_full = self._features(encoder, lab_ref, lab_tgt_full)
        full_hw = (f_full.shape[2], f_full.shape[3])
        with torch.no_grad():
            box = track_box(L.affinity(f_ref.flatten(2), f_full.flatten(2)), full_hw, hw, temp=p.temp)
            col_ref = colour.encode(lab_ref)
            col_tgt = crop_boxes(colour.encode(lab_tgt_full), box, hw)
            lab_tgt = crop_boxes(lab_tgt_full, box * STRIDE, (cfg.crop, cfg.crop))
        f_tgt = crop_boxes(f_full, box, hw)
        logits = L.affinity(f_ref.flatten(2), f_tgt.flatten(2))
        loss, tgt_est, logs = self._intra(colour, logits, f_ref.flatten(2), lab_ref, lab_tgt, col_ref, col_tgt, hw,
                                          step, p.warmup_steps)
        if p.use_inter:
            carried, sparsity = L.inter_video_transform(f_tgt.flatten(2), f_ref.flatten(2), col_ref.flatten(2),
                                                        temp=p.temp, chunk=p.chunk)
            batch_est = colour.decode(carried.view(b, -1, *hw))
            consistency = L.lab_l1(batch_est, tgt_est).mean()
            loss = loss + p.consistency_weight * consistency + p.sparsity_weight * sparsity
            logs.update(consistency=float(consistency.detach()), sparsity=float(sparsity.detach()))
        logs["stage"] = 2.0
        return StepOutput(losses={"encoder": loss}, logs={"loss": float(loss.detach()), **logs})

    # -- evaluation and prediction --------------------------------------------------------------------------------
    def encode_fn(self, encoder: nn.Module) -> Any:
        device = next(encoder.parameters()).device

        def encode(lab: Tensor) -> Tensor:
            return encoder(encoder_input(lab[None].to(device)))[0].float().cpu()

        return encode

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        cfg = CRW if self.config.contrastcorr.propagation == "crw" else PAPER
        result = evaluate_davis(self.encode_fn(nets["encoder"]), eval_dataset(self.config.data, split),
                                Path(out_dir) / "masks", cfg=cfg, stride=STRIDE,
                                short_side=self.config.data.eval_short_side, samples_dir=Path(out_dir))
        per_object = {key: {k: v["J-Mean"] if k == "J" else v["F-Mean"] for k in ("J", "F")}
                      for key, v in result["per_sequence"].items()}
        per_class = {"J-Mean": {k: v["J"] for k, v in per_object.items()},
                     "F-Mean": {k: v["F"] for k, v in per_object.items()}}
        return EvalResult(metrics=result["metrics"], per_class=per_class, monitor="J&F-Mean")

    def export_networks(self, nets: Mapping[str, nn.Module]) -> dict[str, ExportNet]:
        """The frame encoder as ``images -> features`` for ``lowlabel export`` (the colour autoencoder only trains)."""
        size = self.config.data.crop
        return {"encoder": ExportNet(
            module=nets["encoder"].eval(), example_inputs=(torch.randn(2, 3, size, size),), input_names=["images"],
            output_names=["features"], dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}},
            outputs={"features": f"(B, D, H/{STRIDE}, W/{STRIDE}) per-cell features; lowlabel propagates masks with "
                                 "the softmax of their dot products between frames (H, W multiples of 8)"},
            colour="LAB", scale=1 / 256)}  # OpenCV's 8-bit LAB; (lab - 128) / 128 mapped back to [0, 1] = lab / 256

    @torch.no_grad()
    def predict_batch(self, nets: Mapping[str, nn.Module], images: Sequence[Tensor]) -> list[Image]:
        """A picture of the features of each uint8 ``(3, H, W)`` image: their first three principal components as
        RGB, at the image's size (the usual look at a correspondence encoder)."""
        encode = self.encode_fn(nets["encoder"])
        out = []
        for image in images:
            h, w = image.shape[1:]
            lab = rgb_to_lab(image.permute(1, 2, 0).numpy())
            pad_h, pad_w = (-h) % STRIDE, (-w) % STRIDE
            feats = encode(F.pad(lab[None], (0, pad_w, 0, pad_h), mode="replicate")[0])  # (C, h', w')
            flat = feats.flatten(1).t()
            flat = flat - flat.mean(dim=0, keepdim=True)
            _, _, v = torch.linalg.svd(flat, full_matrices=False)
            pcs = (flat @ v[:3].t()).t().reshape(-1, *feats.shape[1:])
            if pcs.shape[0] < 3:
                pcs = torch.cat([pcs, pcs.new_zeros(3 - pcs.shape[0], *pcs.shape[1:])])
            lo, hi = pcs.flatten(1).amin(1)[:, None, None], pcs.flatten(1).amax(1)[:, None, None]
            rgb = (pcs - lo) / (hi - lo).clamp_min(1e-8)
            up = F.interpolate(rgb[None], scale_factor=STRIDE, mode="bilinear", align_corners=False)[0, :, :h, :w]
            out.append(Image(image=(up * 255).round().clamp(0, 255).to(torch.uint8)))
        return out


    def predict(self, nets: Mapping[str, nn.Module], inputs: Path, out: Path, mask: Path | None = None) -> None:
        """With ``mask`` (a first-frame PNG of object ids): ``inputs`` is a video file or a folder of frames, and
        ``out`` gets ``<frame index>.png`` masks (palette) and ``overlay.gif``. A DAVIS-layout folder
        (``JPEGImages/<res>/<seq>/`` + first-frame ``Annotations``): every sequence's masks as
        ``out/<seq>/<frame>.png``. Any other folder or image: the feature pictures of :meth:`predict_batch`.

        Raises:
            DataError: unreadable video, no frames, or a mask whose size differs from the frames'.
        """
        from lowlabel.data.davis import DAVIS2017
        from lowlabel.data.io import save_rgb
        from lowlabel.methods.predict import predict_files
        from lowlabel.models.propagation import propagate_video

        inputs, out = Path(inputs), Path(out)
        if mask is not None:
            self._predict_video(nets, inputs, Path(mask), out)
            return
        if not (inputs / "JPEGImages").is_dir():
            predict_files(self.predict_batch, nets, inputs, out,
                          lambda folder, _p, stem, _i, pred: save_rgb(folder / f"{stem}.png",
                                                                       pred.image.permute(1, 2, 0).numpy()))
            return
        from lowlabel.data.io import save_palette_png

        resolution = next(p.name for p in sorted((inputs / "JPEGImages").iterdir()) if p.is_dir())
        sequences = sorted(p.name for p in (inputs / "JPEGImages" / resolution).iterdir() if p.is_dir())
        dataset = DAVIS2017(root=inputs, resolution=resolution, sequences=sequences)
        cfg = CRW if self.config.contrastcorr.propagation == "crw" else PAPER
        encode = self.encode_fn(nets["encoder"])
        for seq in sequences:
            paths = dataset.frame_paths(seq)
            first = torch.from_numpy(dataset.first_mask(seq).astype("int64"))
            first = torch.where(first == 255, torch.zeros_like(first), first)
            frames = (rgb_to_lab(load_rgb(p)) for p in paths)
            for path, mask in zip(paths, propagate_video(encode, frames, first, cfg=cfg, stride=STRIDE)):
                save_palette_png(out / seq / f"{path.stem}.png", mask.numpy())


    def _predict_video(self, nets: Mapping[str, nn.Module], video: Path, mask_file: Path, out: Path) -> None:
        import numpy as np
        from PIL import Image as PILImage

        from lowlabel.data.io import load_index_png, save_palette_png
        from lowlabel.data.video import read_video
        from lowlabel.errors import DataError
        from lowlabel.models.propagation import propagate_video
        from lowlabel.structures import voc_palette

        frames = read_video(video)  # (T, H, W, 3) uint8; DataError when unreadable
        first = load_index_png(mask_file)
        if first.shape != frames.shape[1:3]:
            raise DataError(f"{mask_file}: mask size {first.shape} differs from the frame size {frames.shape[1:3]} "
                            f"of {video}")
        ids = torch.from_numpy(np.where(first == 255, 0, first).astype("int64"))
        cfg = CRW if self.config.contrastcorr.propagation == "crw" else PAPER
        encode = self.encode_fn(nets["encoder"])
        palette = np.asarray(voc_palette(), np.uint8).reshape(-1, 3)
        overlay = []
        out.mkdir(parents=True, exist_ok=True)
        predicted = propagate_video(encode, (rgb_to_lab(f) for f in frames), ids, cfg=cfg, stride=STRIDE)
        for index, (frame, pred) in enumerate(zip(frames, predicted)):
            labels = pred.numpy()
            save_palette_png(out / f"{index:05d}.png", labels)
            tinted = np.where(labels[..., None] > 0, 0.5 * frame + 0.5 * palette[labels], frame)
            overlay.append(PILImage.fromarray(tinted.astype(np.uint8)))
        overlay[0].save(out / "overlay.gif", save_all=True, append_images=overlay[1:], duration=100, loop=0)


def build(cfg: ContrastCorrConfig) -> ContrastCorr:
    """The one place that reads the config."""
    return ContrastCorr(config=cfg)
