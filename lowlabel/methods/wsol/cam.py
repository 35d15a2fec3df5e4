"""Vanilla CAM for weakly-supervised object localization (the baseline of DA-WSOL).

CAM: Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016, with the
CAM-adapted backbones and the evaluation protocol of wsolevaluation (Choe et al., CVPR 2020).
Training: cross-entropy on the GAP logits of a backbone + 1x1 conv head. Evaluation: the GT-class
CAM as a score map, scored with :mod:`lowlabel.metrics.wsol` (MaxBoxAccV2, GT-known Loc, Top-1 Loc,
PxAP when the split has masks).

    lowlabel train cam --config configs/cam/synth-quick.yaml
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lowlabel.data.transforms import collate_dicts
from lowlabel.methods.base import EvalResult, ExportNet, OptimConfig, StepOutput, TrainerConfig, build_optimizer
from lowlabel.methods.predict import predict_files
from lowlabel.methods.wsol.common import (
    ModelConfig,
    WSOLData,
    WSOLDataConfig,
    WSOLEvalConfig,
    as_labels,
    build_cam_net,
    check_labels,
    count_correct,
    evaluate_wsol,
    export_cam_net,
    localize,
    unwrap,
    write_localization,
)
from lowlabel.structures import Localization


def _wsol_optim() -> OptimConfig:
    # DA-WSOL / wsolevaluation: SGD, Nesterov, momentum 0.9, lr x0.1 every k epochs (given here in steps).
    return OptimConfig(name="sgd", lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4, schedule="step",
                       step_size=1000, gamma=0.1)


@dataclass
class CAMConfig:
    """Config of ``lowlabel train cam``."""

    data: WSOLDataConfig = field(default_factory=WSOLDataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    eval: WSOLEvalConfig = field(default_factory=WSOLEvalConfig)
    optim: OptimConfig = field(default_factory=_wsol_optim)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    predict_threshold: float = 0.5  # `predict`: CAM threshold (fraction of the max) for the boxes


class CAMMethod:
    """CAM: cross-entropy training, CAM evaluation. :class:`~lowlabel.methods.wsol.da_wsol.DAWSOL` extends it."""

    name = "cam"

    def __init__(self, *, config: CAMConfig, data: WSOLData, model: nn.Module, num_classes: int,
                 class_names: list[str] | None = None) -> None:
        self.config = config
        self.data = data
        self.model = model
        self.num_classes = num_classes
        self.class_names = class_names

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        groups = unwrap(nets["model"]).param_groups(lr=self.config.optim.lr,
                                                    new_layer_ratio=self.config.model.new_layer_lr_ratio)
        return {"model": build_optimizer(groups, self.config.optim)}

    def train_dataset(self) -> torch.utils.data.Dataset:
        ds = self.data.dataset("train", train=True)
        check_labels(ds, self.num_classes)
        return ds

    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return collate_dicts(items)

    def training_step(self, nets: Mapping[str, nn.Module], batch: dict[str, Any], step: int) -> StepOutput:
        images = batch["image"]
        labels = as_labels(batch, self.num_classes, images.device)
        out = nets["model"](images)
        loss = F.cross_entropy(out.logits, labels)
        return StepOutput(losses={"model": loss}, logs={"cls": float(loss.detach()),
                                                        "acc": count_correct(out.logits, labels)})

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        tcfg = self.config.trainer
        return evaluate_wsol(unwrap(nets["model"]), self.data, self.config.eval, split=split, out_dir=out_dir,
                             batch_size=tcfg.batch_size, num_workers=tcfg.num_workers)

    @torch.no_grad()
    def predict_batch(self, nets: Mapping[str, nn.Module], images: Sequence[torch.Tensor]) -> list[Localization]:
        """One :class:`~lowlabel.structures.Localization` per uint8 ``(3, H, W)`` image (nets in eval mode)."""
        return localize(unwrap(nets["model"]), images, crop_size=self.config.data.crop_size,
                        threshold=self.config.predict_threshold)

    def export_networks(self, nets: Mapping[str, nn.Module]) -> dict[str, ExportNet]:
        """The classifier as ``images -> (logits, cams)`` for ``lowlabel export`` (DA-WSOL's assigner only trains)."""
        return {"model": export_cam_net(unwrap(nets["model"]), crop_size=self.config.data.crop_size,
                                        class_names=self.class_names)}

    def predict(self, nets: Mapping[str, nn.Module], inputs: Path, out: Path) -> None:
        """CAM overlays ``<name>_cam.png`` and ``boxes.json`` (class, score, boxes) for every image in ``inputs``."""
        rows = predict_files(self.predict_batch, nets, Path(inputs), Path(out),
                             lambda *args: write_localization(*args, self.class_names))
        (Path(out) / "boxes.json").write_text(json.dumps(rows, indent=1))


def build_parts(cfg: CAMConfig) -> dict[str, Any]:
    """Data, number of classes and network from a config (shared with DA-WSOL's ``build``)."""
    data = WSOLData(cfg.data)
    num_classes = data.num_classes()
    names = None
    names_file = data.metadata_root / "class_names.txt"
    if names_file.is_file():
        names = [line.strip() for line in names_file.read_text().splitlines() if line.strip()]
    torch.manual_seed(cfg.trainer.seed)  # the same initial weights for CAM and DA-WSOL at the same seed
    return {"config": cfg, "data": data, "model": build_cam_net(cfg.model, num_classes),
            "num_classes": num_classes, "class_names": names}


def build(cfg: CAMConfig) -> CAMMethod:
    """The CAM method of ``cfg`` (reads the train metadata for the number of classes)."""
    return CAMMethod(**build_parts(cfg))


CONFIG = CAMConfig
