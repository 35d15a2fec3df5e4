"""The segmentation stage of WSSS: a standard network trained on pseudo masks, scored on val.

SIPE (CVPR 2022) and IRN end with a fully-supervised segmentation model trained on their pseudo masks;
the official SIPE repo sends users to other repositories for it (SIPE issue #6). Here it is a method:
``lowlabel train seg --config configs/seg/<dataset>.yaml --init_from <sipe or mlcam run>`` trains
torchvision's DeepLabV3 (no weights downloaded unless asked for) with cross-entropy ignoring 255 on the
pseudo masks of the training split, and evaluates mIoU on val with :mod:`lowlabel.metrics.semseg`.

It is the second stage of a two-stage method: ``init_from`` names the run of the seed stage, whose
evaluation on ``data.train_split`` wrote the pseudo masks into ``<run>/eval/<train_split>/pseudo`` (a
``lowlabel train sipe`` run whose ``trainer.eval_split`` is the training split, or ``lowlabel evaluate sipe
--split <train split>``). ``pseudo_dir`` names such a folder directly instead, e.g. masks of another codebase.

Backbones: ``deeplabv3_resnet50`` / ``deeplabv3_resnet101`` (torchvision, output stride 8), and
``deeplabv3_small`` (a ResNet-18 with output stride 16 under torchvision's ``DeepLabHead``) for ShapesWorld.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lowlabel.errors import DataError
from lowlabel.methods.base import EvalResult, ExportNet, OptimConfig, StepOutput, TrainerConfig
from lowlabel.methods.predict import predict_files
from lowlabel.methods.wsss import common, inference
from lowlabel.models.seg_nets import SEG_ARCHS, SegNet
from lowlabel.models.weights import read_stage
from lowlabel.samples import SampleKeeper, save_sample, write_per_image
from lowlabel.structures import IGNORE_INDEX, Segmentation


@dataclass
class SegModelConfig:
    """The segmentation network."""

    arch: str = "deeplabv3_resnet101"  # see ARCHS; the paper's stage is DeepLab(v2) R101
    pretrained_backbone: str = ""  # "", "torchvision" (ImageNet weights, downloaded) or a local state dict

    def __post_init__(self) -> None:
        if self.arch not in SEG_ARCHS:
            raise ValueError(f"model.arch must be one of {', '.join(SEG_ARCHS)}, got {self.arch!r}")


@dataclass
class SegConfig:
    """Everything ``lowlabel train seg`` reads."""

    data: common.DataConfig = field(default_factory=common.DataConfig)
    # The seed stage: a sipe or mlcam run folder; its eval/<data.train_split>/pseudo holds the pseudo masks.
    init_from: str = ""
    pseudo_dir: str = ""  # or: a folder with <image_id>.png for every image of data.train_split (wins over init_from)
    model: SegModelConfig = field(default_factory=SegModelConfig)
    max_eval_images: int = 0  # 0 = the whole eval split
    num_fixed_samples: int = 6
    num_worst_samples: int = 6
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(batch_size=16, eval_split="val"))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=0.01, momentum=0.9, weight_decay=1e-4, schedule="poly", power=0.9))
    lr_mult: float = 10.0  # the head trains at lr x 10 (DeepLab convention)


CONFIG = SegConfig


SEED_STAGES = ("sipe", "mlcam")  # the runs whose pseudo masks seg trains on


def pseudo_dir_of(cfg: SegConfig) -> str:
    """``cfg.pseudo_dir``, else the pseudo-mask folder of the seed-stage run ``cfg.init_from``."""
    if cfg.pseudo_dir:
        return cfg.pseudo_dir
    if not cfg.init_from:
        raise DataError("seg needs init_from (a sipe or mlcam run folder) or pseudo_dir (a folder of pseudo masks "
                        "<image_id>.png)")
    stage = read_stage(cfg.init_from, stage="seg", accepts=SEED_STAGES, run_only=True)
    folder = Path(cfg.init_from) / "eval" / cfg.data.train_split / "pseudo"
    if not folder.is_dir():
        raise DataError(f"{folder}: no pseudo masks in the {stage.method or 'seed'}-stage run; write them with "
                        f"`lowlabel evaluate {stage.method or 'sipe'} --ckpt {cfg.init_from} --split "
                        f"{cfg.data.train_split}`")
    return str(folder)


def check_pseudo_dir(pseudo_dir: str, image_ids: list[str], split: str) -> Path:
    """The pseudo-mask folder, or ``DataError`` naming the first missing ``<id>.png`` and how many are missing."""
    folder = Path(pseudo_dir)
    if not folder.is_dir():
        raise DataError(f"pseudo-mask folder not found: {folder}")
    missing = [i for i in image_ids if not (folder / f"{i}.png").is_file()]
    if missing:
        raise DataError(f"pseudo-mask folder {folder} misses {len(missing)} of {len(image_ids)} masks of split "
                        f"{split!r}, e.g. {folder / (missing[0] + '.png')}")
    return folder


class Seg:
    """DeepLabV3 trained on pseudo masks."""

    name = "seg"

    def __init__(self, *, config: SegConfig) -> None:
        self.config = config
        self.data = common.WSSSData(config.data)
        self.num_classes = self.data.num_classes + 1
        self.model = SegNet(arch=config.model.arch, num_classes=self.num_classes,
                            pretrained_backbone=config.model.pretrained_backbone)

    @functools.cached_property
    def pseudo_dir(self) -> Path:
        """The checked pseudo-mask folder. Only training reads it, so a trained run evaluates, predicts and loads
        (``lowlabel.load``) without its seed-stage run."""
        train = self.data.split(self.config.data.train_split)
        ids = inference.image_ids(train, len(train))
        return check_pseudo_dir(pseudo_dir_of(self.config), ids, self.config.data.train_split)

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {"model": common.two_group_optimizer(nets["model"], self.config.optim, self.config.lr_mult)}

    def train_dataset(self) -> torch.utils.data.Dataset:
        return self.data.train_set(pseudo_dir=self.pseudo_dir)

    def training_step(self, nets: Mapping[str, nn.Module], batch: Any, step: int) -> StepOutput:
        logits = nets["model"](batch["image"])
        loss = F.cross_entropy(logits, batch["mask"].long(), ignore_index=IGNORE_INDEX)
        return StepOutput(losses={"model": loss}, logs={"loss_ce": float(loss.detach())})

    @torch.no_grad()
    def predict_ids(self, model: nn.Module, image_u8: Tensor) -> np.ndarray:
        """(H, W) uint8 class ids of one uint8 (3, H, W) image."""
        logits = model(common.normalize_image(image_u8)[None])
        return logits[0].argmax(0).cpu().numpy().astype(np.uint8)

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        from lowlabel.metrics.semseg import SegEvaluator

        model = nets["model"]
        ds = self.data.split(split)
        n = len(ds) if self.config.max_eval_images <= 0 else min(self.config.max_eval_images, len(ds))
        evaluator = SegEvaluator(num_classes=self.num_classes)
        per_image: dict[str, float] = {}
        keeper = SampleKeeper(inference.image_ids(ds, n), self.config.num_fixed_samples, self.config.num_worst_samples)
        for i in range(n):
            s = ds[i]
            if s.get("mask") is None:
                continue
            image_u8 = torch.as_tensor(s["image"])
            pred = self.predict_ids(model, image_u8)
            gt = np.asarray(s["mask"], dtype=np.uint8).reshape(pred.shape)
            evaluator.update(pred, gt)
            image_id = str(s["image_id"])
            per_image[image_id] = inference.image_miou(pred, gt, self.num_classes)
            # "seed" holds the network's prediction for the report's segmentation panel
            keeper.offer(image_id, per_image[image_id], {"image": image_u8.permute(1, 2, 0).numpy().astype(np.uint8),
                                                         "gt": gt, "seed": pred})
        if not per_image:
            raise DataError(f"split {split!r} of {self.data.root} has no SegmentationClass masks to score")
        out_dir = Path(out_dir)
        write_per_image(out_dir, per_image)
        names = ["background"] + self.data.class_names
        for image_id, p in keeper.chosen():
            save_sample(out_dir, image_id, "segmentation", p["image"], gt=p["gt"], seed=p["seed"],
                        class_names=np.asarray(names))
        res = evaluator.compute()
        iou = {n: (None if v is None or not np.isfinite(v) else float(v)) for n, v in zip(names, res["IoU"])}
        return EvalResult(metrics={"mIoU": float(res["mIoU"])}, per_class={"IoU": iou}, monitor="mIoU")

    @torch.no_grad()
    def predict_batch(self, nets: Mapping[str, nn.Module], images: Sequence[Tensor]) -> list[Segmentation]:
        """The network's class-id map of each uint8 ``(3, H, W)`` image (nets in eval mode)."""
        return [Segmentation(mask=torch.from_numpy(self.predict_ids(nets["model"], torch.as_tensor(image))))
                for image in images]

    def export_networks(self, nets: Mapping[str, nn.Module]) -> dict[str, ExportNet]:
        """The segmentation network as ``images -> logits`` for ``lowlabel export``."""
        model, size = nets["model"], self.config.data.crop
        return {"model": ExportNet(
            module=model.eval(), example_inputs=(torch.randn(2, 3, size, size),), input_names=["images"],
            output_names=["logits"], dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}},
            outputs={"logits": "(B, K+1, H, W) class scores at the input size, background first; argmax = the mask"},
            class_names=["background", *self.data.class_names])}

    def predict(self, nets: Mapping[str, nn.Module], inputs: Path, out: Path) -> None:
        """``masks/<name>.png`` (VOC palette class ids) and an overlay for every image in ``inputs``."""
        predict_files(self.predict_batch, nets, Path(inputs), Path(out),
                      functools.partial(inference.write_segmentation, mask_dir="masks"))


def build(cfg: SegConfig) -> Seg:
    """The one place that reads the config."""
    return Seg(config=cfg)
