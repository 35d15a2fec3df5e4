"""``contrastcorr_ae``: ContrastCorr's colour autoencoder, the first stage, trained on the same unlabeled frames.

ContrastCorr reconstructs a frame's colours by copying the colour autoencoder's features of another frame through
the encoder's affinity, then decoding them. The official code loads UVC's VGG autoencoder, pretrained elsewhere and
frozen. Here it is a stage of its own, so nothing external is needed: a :class:`~lowlabel.models.correspondence_nets.
ColourAutoencoder` trained to reconstruct random LAB crops of single frames of the training videos with
ContrastCorr's LAB L1 (L x 1, a and b x 10); ``lowlabel train contrastcorr --init_from <this run>`` then holds it
frozen. Evaluation reconstructs every frame of the first ``data.eval_sequences`` sequences of ``data.eval_split``:
``PSNR`` (dB, RGB, higher is better; picks the best checkpoint) and ``L1`` (the training loss).

    lowlabel train contrastcorr_ae --config configs/contrastcorr_ae/synth-quick.yaml
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lowlabel.data.io import save_rgb
from lowlabel.data.video import VideoClips
from lowlabel.losses.contrastcorr import lab_l1
from lowlabel.methods.base import EvalResult, OptimConfig, StepOutput, TrainerConfig, build_optimizer
from lowlabel.methods.correspondence.common import (
    LabCrops,
    VideoDataConfig,
    clips_root,
    eval_dataset,
    lab_to_rgb,
    rgb_to_lab,
)
from lowlabel.methods.predict import predict_files
from lowlabel.models.correspondence_nets import ColourAutoencoder
from lowlabel.structures import Image


@dataclass
class ColourAEModelConfig:
    channels: int = 64  # features at 1/8 (UVC's autoencoder: 256)


@dataclass
class ColourAEConfig:
    """Config of ``lowlabel train contrastcorr_ae``."""

    data: VideoDataConfig = field(default_factory=VideoDataConfig)
    model: ColourAEModelConfig = field(default_factory=ColourAEModelConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(name="adam", lr=1e-3, weight_decay=0.0))
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(max_steps=200, batch_size=16))
    samples_per_video: int = 4  # random frames drawn from each video per pass


CONFIG = ColourAEConfig


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (inf when they are equal)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def reconstruct(model: nn.Module, lab: torch.Tensor) -> torch.Tensor:
    """(3, H, W) LAB -> its reconstruction at the same size (padded by replication to a multiple of 8 first)."""
    h, w = lab.shape[1:]
    pad_h, pad_w = (-h) % 8, (-w) % 8
    x = F.pad(lab[None], (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else lab[None]
    return model(x)[0, :, :h, :w]


class ColourAE:
    """The colour autoencoder stage."""

    name = "contrastcorr_ae"

    def __init__(self, *, config: ColourAEConfig) -> None:
        self.config = config
        self.model = ColourAutoencoder(channels=config.model.channels)

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {"model": build_optimizer(nets["model"].parameters(), self.config.optim)}

    def train_dataset(self) -> torch.utils.data.Dataset:
        return VideoClips(root=clips_root(self.config.data), num_frames=1, min_gap=0, max_gap=0,
                          samples_per_video=self.config.samples_per_video, transforms=LabCrops(self.config.data.crop))

    def collate(self, items: list[dict[str, Any]]) -> torch.Tensor:
        return torch.cat([item["frames"] for item in items])  # (B, 3, crop, crop) LAB

    def training_step(self, nets: Mapping[str, nn.Module], batch: torch.Tensor, step: int) -> StepOutput:
        loss = lab_l1(nets["model"](batch), batch).mean()
        return StepOutput(losses={"model": loss}, logs={"l1": float(loss.detach())})

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        model = nets["model"]
        device = next(model.parameters()).device
        dataset = eval_dataset(self.config.data, split)
        psnrs, l1s = [], []
        for index in range(len(dataset)):
            item = dataset[index]
            for t, frame in enumerate(item["frames"].permute(0, 2, 3, 1).numpy()):
                lab = rgb_to_lab(frame).to(device)
                recon = reconstruct(model, lab)
                l1s.append(float(lab_l1(recon[None], lab[None])[0]))
                rgb = lab_to_rgb(recon)
                psnrs.append(psnr(rgb, frame))
                if t == 0:
                    save_rgb(Path(out_dir) / f"{item['name']}.png", np.concatenate([frame, rgb], axis=1))
        return EvalResult(metrics={"PSNR": float(np.mean(psnrs)), "L1": float(np.mean(l1s))}, monitor="PSNR")

    @torch.no_grad()
    def predict_batch(self, nets: Mapping[str, nn.Module], images: Sequence[torch.Tensor]) -> list[Image]:
        """The reconstruction of each uint8 ``(3, H, W)`` RGB image, at its size (nets in eval mode)."""
        model = nets["model"]
        device = next(model.parameters()).device
        out = []
        for image in images:
            lab = rgb_to_lab(image.permute(1, 2, 0).numpy()).to(device)
            out.append(Image(image=torch.from_numpy(lab_to_rgb(reconstruct(model, lab))).permute(2, 0, 1)))
        return out

    def predict(self, nets: Mapping[str, nn.Module], inputs: Path, out: Path) -> None:
        """``<name>.png``: the reconstruction of every image in ``inputs``."""
        predict_files(self.predict_batch, nets, Path(inputs), Path(out),
                      lambda folder, _path, stem, _img, pred: save_rgb(folder / f"{stem}.png",
                                                                        pred.image.permute(1, 2, 0).numpy()))


def build(cfg: ColourAEConfig) -> ColourAE:
    """The one place that reads the config."""
    return ColourAE(config=cfg)
