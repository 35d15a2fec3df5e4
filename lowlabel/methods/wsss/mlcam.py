"""Multi-label CAM baseline for weakly-supervised semantic segmentation (the baseline SIPE must beat).

The same backbone, data, optimiser and budget as :mod:`lowlabel.methods.wsss.sipe`, trained with the
classification loss only (``multilabel_soft_margin(GAP(cam), y)``; IRN's ``train_cam``). Seeds are the
conventional ones: multi-scale + flip CAMs of the image's classes, normalised by their max, against a
constant background score ``t``; ``t`` is chosen on the ``threshold_split`` (VOC: val) by the scoring
suite's :func:`lowlabel.metrics.semseg.best_background_threshold`, then applied to the evaluated split
(``mIoU``). ``mIoU_own_best_threshold`` / ``own_best_threshold`` are the same seeds with ``t`` swept on the evaluated
split itself, as IRN/SIPE's ``eval_cam.py`` report the baseline. This answers SIPE issues #9/#14 (the CAM
baseline could not be reproduced): it is a config, not a fork.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lowlabel.methods.base import EvalResult, ExportNet, OptimConfig, StepOutput, TrainerConfig
from lowlabel.methods.predict import predict_files
from lowlabel.methods.wsss import common, inference
from lowlabel.structures import Segmentation


@dataclass
class MLCAMConfig:
    """Everything ``lowlabel train mlcam`` reads (sections shared with ``sipe``)."""

    data: common.DataConfig = field(default_factory=common.DataConfig)
    model: common.ModelConfig = field(default_factory=common.ModelConfig)
    infer: common.InferConfig = field(default_factory=common.InferConfig)
    threshold_split: str = "val"  # split on which the background threshold is searched (VOC convention)
    # background thresholds tried: (first, last, step); IRN/SIPE eval_cam.py sweep 0.05 .. 0.95 by 0.01
    threshold_range: tuple[float, float, float] = (0.05, 0.95, 0.01)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(batch_size=16, eval_split="train"))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=0.1, momentum=1e-4, weight_decay=1e-4, schedule="poly", power=0.9, grad_clip=1.0))
    lr_mult: float = 10.0

    def __post_init__(self) -> None:
        first, last, step = self.threshold_range
        if not (0.0 < first <= last < 1.0 and step > 0):
            raise ValueError(f"threshold_range must be (first, last, step) with 0 < first <= last < 1, "
                             f"got {self.threshold_range}")

    @property
    def thresholds(self) -> list[float]:
        first, last, step = self.threshold_range
        return [round(first + i * step, 6) for i in range(int(round((last - first) / step)) + 1)]


CONFIG = MLCAMConfig


class MLCAM:
    """Multi-label CAM with a background threshold."""

    name = "mlcam"

    def __init__(self, *, config: MLCAMConfig) -> None:
        self.config = config
        self.data = common.WSSSData(config.data)
        self.num_classes = self.data.num_classes
        self.model = common.build_cam_net(config.model, self.num_classes, side_features=False)
        self.threshold: float | None = None

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {"model": common.two_group_optimizer(nets["model"], self.config.optim, self.config.lr_mult)}

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
        cams, feats = common.multiscale_maps(model, image, scales=cfg.scales, flip=cfg.flip,
                                             maps=lambda out: (F.relu(out.cam), out.x4))
        return cams * labels.view(-1, 1, 1), feats

    def find_threshold(self, model: nn.Module) -> float:
        """The background score that maximises seed mIoU on ``threshold_split`` (scoring suite search)."""
        from lowlabel.metrics.semseg import BackgroundThresholdSearch

        split = self.config.threshold_split
        ds = self.data.split(split)
        n = len(ds) if self.config.infer.max_images <= 0 else min(self.config.infer.max_images, len(ds))
        search = BackgroundThresholdSearch(self.num_classes + 1, thresholds=self.config.thresholds)
        scored = 0
        for i in range(n):
            s = ds[i]
            if s.get("mask") is None:
                continue
            lab = common.check_labels(s["labels"], str(s["image_id"]), f"{self.data.root} split {split}")
            cam, _ = self.cam_maps(model, common.normalize_image(s["image"]), lab)
            search.update(cam.cpu().numpy(), np.asarray(s["mask"], dtype=np.int64), lab.cpu().numpy())
            scored += 1
        if not scored:
            raise ValueError(f"split {split!r} of {self.data.root} has no GT masks; "
                             "the background threshold search needs them (set threshold_split)")
        return float(search.compute()["threshold"])

    def score_fn(self, model: nn.Module, threshold: float) -> common.ScoreFn:
        """(image, labels) -> ((K+1, H, W) scores with the constant background ``threshold``, features)."""

        def score(image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
            cam, feats = self.cam_maps(model, image, labels)
            return torch.cat([torch.full_like(cam[:1], threshold), cam]), feats

        return score

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        from lowlabel.metrics.semseg import BackgroundThresholdSearch

        model = nets["model"]
        t = self.find_threshold(model)
        self.threshold = t
        # IRN/SIPE eval_cam.py sweep the threshold on the scored split itself; report that number too
        own = BackgroundThresholdSearch(self.num_classes + 1, thresholds=self.config.thresholds)

        def sweep(scores: Tensor, gt: np.ndarray, labels: Tensor) -> None:
            own.update(scores[1:].cpu().numpy(), gt.astype(np.int64), labels.cpu().numpy())

        result = inference.evaluate_maps(self.score_fn(model, t), self.data, split, Path(out_dir), self.config.infer,
                                         on_scored=sweep)
        result.metrics["bg_threshold"] = t
        if "mIoU" in result.metrics:
            best = own.compute()
            result.metrics["mIoU_own_best_threshold"] = float(best["mIoU"])
            result.metrics["own_best_threshold"] = float(best["threshold"])
        return result

    def state_dict(self) -> dict[str, Any]:
        """The background threshold found at the last evaluation (saved in checkpoints for ``predict``)."""
        return {"threshold": self.threshold}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.threshold = state.get("threshold")

    @torch.no_grad()
    def predict_batch(self, nets: Mapping[str, nn.Module], images: Sequence[Tensor]) -> list[Segmentation]:
        """Seeds and pseudo masks of uint8 ``(3, H, W)`` images, for the classes the classifier finds (eval mode)."""
        model = nets["model"]
        t = self.threshold if self.threshold is not None else self.find_threshold(model)
        return inference.segment(model, self.score_fn(model, t), images, self.config.infer)

    def export_networks(self, nets: Mapping[str, nn.Module]) -> dict[str, ExportNet]:
        """The classifier as ``images -> (logits, cams)`` for ``lowlabel export`` (one scale, no flip, no seeds)."""
        model, size = nets["model"], self.config.data.crop
        background = "" if self.threshold is None else f" ({self.threshold:.2f} for this run)"
        return {"model": inference.export_net(
            inference.MultiLabelCAMInference(model), model, inputs={"images": torch.randn(2, 3, size, size)},
            outputs={"logits": "(B, K) multi-label scores; sigmoid > 0.5 = the classes present (lowlabel's predict)",
                     "cams": "(B, K, h, w) relu(CAM); lowlabel's seeds sum scales and flips, divide each map by its "
                             f"max and compare it with a constant background score{background}"},
            class_names=self.data.class_names)}

    def predict(self, nets: Mapping[str, nn.Module], inputs: Path, out: Path) -> None:
        """``seeds/``, ``pseudo/`` (VOC palette PNGs) and ``overlays/`` for every image in ``inputs``."""
        predict_files(self.predict_batch, nets, Path(inputs), Path(out), inference.write_segmentation)


def build(cfg: MLCAMConfig) -> MLCAM:
    """The one place that reads the config."""
    return MLCAM(config=cfg)
