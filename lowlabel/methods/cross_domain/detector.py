"""``detector``: the source-only object detector of cross-domain detection, later frozen under the translators.

LGCL (BMVC 2024, arXiv:2410.05058) and its baselines never adapt the detector: a Faster R-CNN is trained on the
labelled source domain only (Cityscapes, Sim10k, KITTI; ShapesWorld ``domains/trainA``) and then runs, frozen, on
target images translated into the source style (``lowlabel train cut|lgcl --detector RUN``). Evaluated directly on
the raw target test split it gives the "source-only" row of the papers' tables; on the clear counterparts (Cityscapes
val for Foggy Cityscapes, ShapesWorld ``testB_clean``) the "oracle" row.

The network is detectron2's R50-C4 from torchvision parts (:mod:`lowlabel.models.detectors`). One training step::

    images, targets = a batch of the source split (random horizontal flip), boxes xyxy, labels 1..K
    losses = model(images, targets)   # torchvision: loss_objectness, loss_rpn_box_reg (RPN, 256 anchors/image),
                                      #              loss_classifier, loss_box_reg (RoI head, sampled RoIs/image)
    L = sum(losses)                   # unit weights, as detectron2 and torchvision; each term is logged

SGD with momentum; BatchNorm parameters (when they train) have no weight decay (detectron2's WEIGHT_DECAY_NORM = 0).
Evaluation on any labelled split: VOC mAP@0.5 (all-point, or VOC07 11-point with ``use_07_metric``) with per-class AP
(``lowlabel.metrics.voc_ap``, our exclusive boxes converted to its inclusive corners). ``predict`` draws the
detections (score >= 0.5) on each input image and writes all of them (score >= ``model.roi.score_thresh``) as a
COCO results file.

With ``data.class_agnostic`` every box is one class, ``object``: trained on ShapesWorld ``coco/`` train (base boxes
only) it is RegionCLIP's offline proposal network (``configs/detector/coco-rpn-*.yaml``,
:mod:`lowlabel.methods.open_vocab.proposals`).

    lowlabel train detector --config configs/detector/synth-full.yaml --run-dir runs/detector/full
    lowlabel evaluate detector --ckpt runs/detector/full --split testB        # source-only on the foggy target
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lowlabel.methods.base import EvalResult, OptimConfig, StepOutput, TrainerConfig, build_optimizer
from lowlabel.methods.cross_domain.common import (
    DetectionDataConfig,
    DetectionSplit,
    DetectorModelConfig,
    TrainAugment,
    ap_metrics,
    build_network,
    coco_results,
    collate_detection,
    detect,
    draw_detections,
    eval_target,
    image_recall,
    score_detections,
    to_inclusive,
)
from lowlabel.methods.predict import predict_files
from lowlabel.models.detectors import RoISettings, RPNSettings
from lowlabel.samples import SampleKeeper, save_sample, write_per_image
from lowlabel.structures import Detections


def _synth_model() -> DetectorModelConfig:
    # The ShapesWorld recipe of configs/detector/synth-full.yaml (its comments give the reasons).
    return DetectorModelConfig(
        backbone="resnet_small",
        width=32,
        pretrained="",
        min_size=0,
        max_size=0,
        rpn=RPNSettings(anchor_sizes=(12.0, 24.0, 48.0), aspect_ratios=(0.5, 0.75, 1.0), post_nms_top_n_test=100),
        roi=RoISettings(pool_size=7, batch_size_per_image=64),
    )


def _optim() -> OptimConfig:
    return OptimConfig(
        name="sgd",
        lr=0.02,
        momentum=0.9,
        weight_decay=1e-4,
        schedule="multistep",
        milestones=(1333, 1778),
        gamma=0.1,
        warmup_steps=100,
    )


@dataclass
class DetectorConfig:
    """Config of ``lowlabel train detector``; the defaults are the ShapesWorld ``full`` recipe."""

    data: DetectionDataConfig = field(default_factory=lambda: DetectionDataConfig(root="synth:full"))
    model: DetectorModelConfig = field(default_factory=_synth_model)
    use_07_metric: bool = False  # VOC07 11-point AP instead of the all-point area (recorded in the metrics)
    optim: OptimConfig = field(default_factory=_optim)
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(max_steps=2000, batch_size=4, eval_split="testA", log_every=25)
    )


CONFIG = DetectorConfig


class Detector:
    """Faster R-CNN C4 trained on the labelled source split (module docstring)."""

    name = "detector"

    def __init__(self, *, config: DetectorConfig) -> None:
        classes = list(config.data.classes)
        if not classes:  # the train split's classes, recorded in the run's config for load_detector and rebuilds
            classes = self.split(config.data, config.data.train_split).class_names
        self.config = dataclasses.replace(config, data=dataclasses.replace(config.data, classes=classes))
        self.class_names = classes
        self.model = build_network(config.model, len(classes))

    @staticmethod
    def split(
        data: DetectionDataConfig, name: str, *, classes: Sequence[str] = (), transforms: Any = None, limit: int = 0
    ) -> DetectionSplit:
        return DetectionSplit(name=name, folders=data.split(name), classes=classes, transforms=transforms, limit=limit,
                              class_agnostic=data.class_agnostic)

    # -- training

    def networks(self) -> dict[str, nn.Module]:
        return {"detector": self.model}

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        norm_types = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
        norm = {id(p) for m in nets["detector"].modules() if isinstance(m, norm_types) for p in m.parameters()}
        params = [p for p in nets["detector"].parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if id(p) not in norm]},
            {"params": [p for p in params if id(p) in norm], "weight_decay": 0.0},
        ]
        return {"detector": build_optimizer([g for g in groups if g["params"]], self.config.optim)}

    def train_dataset(self) -> torch.utils.data.Dataset:
        data = self.config.data
        return self.split(data, data.train_split, classes=self.class_names, transforms=TrainAugment(flip=data.flip))

    collate = staticmethod(collate_detection)

    def training_step(self, nets: Mapping[str, nn.Module], batch: Mapping[str, Any], step: int) -> StepOutput:
        targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in batch["targets"]]  # torchvision: 1..K
        terms = nets["detector"](batch["images"], targets)
        loss = sum(terms.values())
        logs = {key: float(value.detach()) for key, value in terms.items()}
        logs["loss"] = float(loss.detach())
        return StepOutput(losses={"detector": loss}, logs=logs)

    # -- evaluation

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        """mAP@0.5 and per-class AP on ``split``; ``per_image.csv`` (each image's share of GT boxes found at score
        >= 0.5) and ``samples/`` (detection panels) in ``out_dir``."""
        data = self.config.data
        ds = self.split(data, split, classes=self.class_names, limit=data.max_eval_images)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        keeper = SampleKeeper(ds.image_ids(), num_fixed=data.num_fixed_samples, num_worst=data.num_worst_samples)
        detections: list[Detections] = []
        targets: list[dict[str, Tensor]] = []
        per_image: list[tuple[str, float]] = []
        step = self.config.trainer.batch_size
        for start in range(0, len(ds), step):
            items = [ds[i] for i in range(start, min(start + step, len(ds)))]
            found = detect(
                nets["detector"], [it["image"].as_subclass(Tensor).float() / 255 for it in items], self.class_names
            )
            for item, dets in zip(items, found):
                target = eval_target(item)
                detections.append(dets)
                targets.append(target)
                score = image_recall(dets, target)
                per_image.append((item["image_id"], score))
                keeper.offer(item["image_id"], score, (item["image"], target, dets))
        for image_id, (image, target, dets) in keeper.chosen():
            save_sample(
                out_dir,
                image_id,
                "detection",
                image.permute(1, 2, 0).numpy(),
                gt_boxes=to_inclusive(target["boxes"]).astype(np.float32),
                gt_labels=target["labels"].numpy(),
                pred_boxes=to_inclusive(dets.boxes).astype(np.float32),
                pred_scores=dets.scores.numpy(),
                pred_labels=dets.labels.numpy(),
                class_names=np.asarray(self.class_names),
            )
        write_per_image(out_dir, per_image)
        scored = score_detections(detections, targets, self.class_names, use_07_metric=self.config.use_07_metric)
        metrics = {"mAP": float(scored["mAP"])}
        metrics.update(ap_metrics(scored["AP"]))
        metrics["use_07_metric"] = float(self.config.use_07_metric)
        return EvalResult(metrics=metrics, per_class={"AP": dict(scored["AP"])}, monitor="mAP")

    # -- inference

    def predict_batch(self, nets: Mapping[str, nn.Module], images: Sequence[Tensor]) -> list[Detections]:
        """One :class:`~lowlabel.structures.Detections` per uint8 ``(3, H, W)`` image, in its pixels."""
        return detect(nets["detector"], [torch.as_tensor(img).float() / 255 for img in images], self.class_names)

    def predict(self, nets: Mapping[str, nn.Module], inputs: Path, out: Path) -> None:
        """``<name>.png``: each input with its detections (score >= 0.5) drawn; ``detections.json``: every detection
        as a COCO results list (``image_id`` = 1-based position of the image in sorted input order, ``category_id`` =
        label + 1, ``bbox`` = [x, y, w, h]), each entry also naming its ``file_name`` and ``category_name``."""
        results: list[dict[str, Any]] = []
        written: list[str] = []

        def write(folder: Path, source: Path, stem: str, array: np.ndarray, dets: Detections) -> int:
            from PIL import Image as PILImage

            PILImage.fromarray(draw_detections(array, dets, self.class_names)).save(folder / f"{stem}.png")
            written.append(str(source))
            image_id = len(written)
            results.extend(coco_results(dets, image_id=image_id, file_name=str(source), class_names=self.class_names))
            return image_id

        predict_files(self.predict_batch, nets, Path(inputs), Path(out), write)
        (Path(out) / "detections.json").write_text(json.dumps(results, indent=1))


def build(cfg: DetectorConfig) -> Detector:
    """The one place that reads the config."""
    return Detector(config=cfg)
