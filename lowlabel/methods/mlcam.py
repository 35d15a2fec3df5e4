"""Multi-label CAM baseline for weakly-supervised semantic segmentation (the baseline SIPE must beat).

The same backbone, data, optimiser and budget as :mod:`lowlabel.methods.sipe`, trained with the
classification loss only (``multilabel_soft_margin(GAP(cam), y)``; IRN's ``train_cam``). Seeds are the
conventional ones: multi-scale + flip CAMs of the image's classes, normalised by their max, against a
constant background score ``t``; ``t`` is chosen on the ``threshold_split`` (VOC: val) by the scoring
suite's :func:`lowlabel.metrics.semseg.best_background_threshold`, then applied to the evaluated split.
This answers SIPE issues #9/#14 (the CAM baseline could not be reproduced): it is a config, not a fork.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lowlabel.methods import wsss
from lowlabel.methods.base import EvalResult, OptimConfig, StepOutput, TrainerConfig
from lowlabel.methods.sipe import ModelConfig, SIPENet, build_backbone


@dataclass
class MLCAMConfig:
    """Everything ``lowlabel train mlcam`` reads (sections shared with ``sipe``)."""

    data: wsss.DataConfig = field(default_factory=wsss.DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    infer: wsss.InferConfig = field(default_factory=wsss.InferConfig)
    threshold_split: str = "val"  # split on which the background threshold is searched (VOC convention)
    thresholds: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(batch_size=16, eval_split="train"))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=0.1, momentum=1e-4, weight_decay=1e-4, schedule="poly", power=0.9, grad_clip=1.0))
    lr_mult: float = 10.0

    def __post_init__(self) -> None:
        if not self.thresholds or not all(0.0 < t < 1.0 for t in self.thresholds):
            raise ValueError(f"thresholds must lie in (0, 1), got {self.thresholds}")


CONFIG = MLCAMConfig


class MLCAM:
    """Multi-label CAM with a background threshold."""

    name = "mlcam"

    def __init__(self, *, config: MLCAMConfig) -> None:
        self.config = config
        self.data = wsss.WSSSData(config.data)
        self.num_classes = self.data.num_classes
        self.model = SIPENet(backbone=build_backbone(config.model), num_classes=self.num_classes,
                             side_channels=None, detach_stage=config.model.detach_stage)
        self.threshold: float | None = None

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {"model": wsss.two_group_optimizer(nets["model"], self.config.optim, self.config.lr_mult)}

    def train_dataset(self) -> torch.utils.data.Dataset:
        return self.data.train_set()

    def training_step(self, nets: Mapping[str, nn.Module], batch: Any, step: int) -> StepOutput:
        out = nets["model"](batch["image"])
        loss = F.multilabel_soft_margin_loss(out.cam.mean(dim=(2, 3)), batch["labels"].float())
        return StepOutput(losses={"model": loss}, logs={"loss_cls": float(loss.detach())})

    @torch.no_grad()
    def cam_maps(self, model: nn.Module, image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Multi-scale + flip CAMs of one image: ((K, H, W) in [0, 1], absent classes 0; (D, h, w) features)."""
        cfg = self.config.infer
        _, hh, ww = image.shape
        total, feats = None, None
        for scale in cfg.scales:
            out = wsss.flip_fused_forward(model, image, scale, cfg.flip)
            up = F.interpolate(F.relu(out.cam), size=(hh, ww), mode="bilinear", align_corners=False)[0]
            total = up if total is None else total + up
            if feats is None or scale == 1.0:
                feats = out.x4[0]
        assert total is not None and feats is not None
        total = total / (total.amax(dim=(1, 2), keepdim=True) + 1e-5)
        return total * labels.view(-1, 1, 1), feats

    def find_threshold(self, model: nn.Module) -> float:
        """The background score that maximises seed mIoU on ``threshold_split`` (scoring suite search)."""
        from lowlabel.metrics.semseg import best_background_threshold

        ds = self.data.split(self.config.threshold_split)
        n = len(ds) if self.config.infer.max_images <= 0 else min(self.config.infer.max_images, len(ds))
        cams, gts, labels = [], [], []
        for i in range(n):
            s = ds[i]
            if s.get("mask") is None:
                continue
            where = f"{self.data.root} split {self.config.threshold_split}"
            lab = wsss.check_labels(s["labels"], str(s["image_id"]), where)
            cam, _ = self.cam_maps(model, wsss.normalize_image(torch.as_tensor(s["image"])), lab)
            cams.append(cam.cpu().numpy())
            gts.append(np.asarray(s["mask"], dtype=np.uint8).reshape(cam.shape[1:]))
            labels.append(lab.cpu().numpy())
        if not cams:
            raise ValueError(f"split {self.config.threshold_split!r} of {self.data.root} has no GT masks; "
                             "the background threshold search needs them (set threshold_split)")
        return best_threshold_value(best_background_threshold(cams, gts, labels, list(self.config.thresholds)))

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        model = nets["model"]
        model.eval()
        try:
            t = self.find_threshold(model)
            self.threshold = t

            def score(image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
                cam, feats = self.cam_maps(model, image, labels)
                return torch.cat([torch.full_like(cam[:1], t), cam]), feats

            result = wsss.evaluate_maps(score, self.data, split, Path(out_dir), self.config.infer)
            result.metrics["bg_threshold"] = t
            return result
        finally:
            model.train()

    def predict(self, nets: Mapping[str, nn.Module], inputs: Path, out: Path) -> None:
        model = nets["model"]
        model.eval()
        t = self.threshold if self.threshold is not None else self.find_threshold(model)

        def score(image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
            cam, feats = self.cam_maps(model, image, labels)
            return torch.cat([torch.full_like(cam[:1], t), cam]), feats

        wsss.predict_folder(model, score, Path(inputs), Path(out), self.config.infer)


def best_threshold_value(found: Any) -> float:
    """The threshold out of ``best_background_threshold``'s result (a number, a tuple or a dict)."""
    if isinstance(found, dict):
        for key in ("threshold", "best_threshold", "t"):
            if key in found:
                return float(found[key])
    if isinstance(found, tuple | list):
        return float(found[0])
    return float(found)


def build(cfg: MLCAMConfig) -> MLCAM:
    """The one place that reads the config."""
    return MLCAM(config=cfg)
