"""``classify``: supervised image classification on an ImageNet-layout folder, the pretraining of the toolkit.

It trains a backbone + global-average-pooling + linear head with cross-entropy on ``<root>/train/<class>/``
(ShapesWorld ``pretrain/``, ImageNet itself, or a user's folder; :mod:`lowlabel.data.imagenet`) and scores top-1
and top-5 accuracy on ``<root>/val/``. The run folder is the exported backbone: ``model.pretrained: <run folder>``
in any method's config loads it (``resnet_small``: the ``backbone.body.*`` weights; ``resnet18/34/50``: the
network is a torchvision ResNet, so its state dict is torchvision's layout), and
:func:`lowlabel.pretrained.export_backbone` writes it as a plain ``.safetensors`` state dict for other code.
``model.pretrained: synth:pretrain`` finds the run trained on ShapesWorld ``pretrain/`` in the cache
(:func:`lowlabel.models.weights.resolve_pretrained`).

The defaults are the ShapesWorld ``full`` recipe (``configs/classify/synth-full.yaml`` spells them out):
torchvision's reference recipe shrunk to 64-px crops and about 25 CPU-minutes: random-resized crops (area 25-100 %)
and flips, SGD with Nesterov momentum 0.9, lr 0.2 for batch 128 with 200 warm-up steps then cosine, weight decay
5e-5 (1e-4 in torchvision), label smoothing 0.1; evaluation resizes the shorter side to crop / 0.875 and
centre-crops (256 -> 224 on ImageNet).

    lowlabel train classify --config configs/classify/synth-full.yaml
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from lowlabel.data.imagenet import ImageFolderIndex, index_split
from lowlabel.data.io import load_rgb, to_image
from lowlabel.data.transforms import normalize
from lowlabel.methods.base import EvalResult, ExportNet, OptimConfig, StepOutput, TrainerConfig, build_optimizer
from lowlabel.methods.predict import predict_files
from lowlabel.models.backbones import build_backbone
from lowlabel.models.weights import resolve_pretrained
from lowlabel.structures import Classification

TORCHVISION_ARCHS = ("resnet18", "resnet34", "resnet50")
BACKBONES = ("resnet_small", *TORCHVISION_ARCHS)


@dataclass
class ClassifyDataConfig:
    """The image folder and the augmentation."""

    root: str = "synth:full"  # an ImageNet-layout folder, or synth:<preset>[:<seed>] (ShapesWorld pretrain/)
    train_split: str = "train"
    crop: int = 64  # training and evaluation input size (ImageNet: 224)
    min_scale: float = 0.25  # RandomResizedCrop's smallest area fraction (torchvision: 0.08)
    eval_resize_ratio: float = 0.875  # evaluation: shorter side to crop / ratio, then centre crop (256 -> 224)

    def __post_init__(self) -> None:
        if not 0.0 < self.min_scale <= 1.0 or not 0.0 < self.eval_resize_ratio <= 1.0:
            raise ValueError("data.min_scale and data.eval_resize_ratio must be in (0, 1]")


@dataclass
class ClassifyModelConfig:
    """The backbone."""

    backbone: str = "resnet_small"  # resnet_small (ShapesWorld) or a torchvision ResNet: resnet18/34/50
    width: int = 32  # resnet_small: first-stage channels (the WSSS configs' width; D = 8 x width)
    pretrained: str = ""  # start from these weights (see lowlabel.models.weights.resolve_pretrained)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"model.backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")


def _optim() -> OptimConfig:
    return OptimConfig(name="sgd", lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-5, schedule="cosine",
                       warmup_steps=200)


@dataclass
class ClassifyConfig:
    """Config of ``lowlabel train classify``."""

    data: ClassifyDataConfig = field(default_factory=ClassifyDataConfig)
    model: ClassifyModelConfig = field(default_factory=ClassifyModelConfig)
    optim: OptimConfig = field(default_factory=_optim)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(
        max_steps=2000, batch_size=128, eval_every=500, eval_split="val", log_every=50))
    label_smoothing: float = 0.1
    top_k: int = 5  # the second accuracy reported (top-5)


CONFIG = ClassifyConfig


class Classifier(nn.Module):
    """``resnet_small`` body + global average pooling + linear head; keys ``backbone.body.*`` and ``fc.*``."""

    def __init__(self, *, width: int, num_classes: int, pretrained: str = "") -> None:
        super().__init__()
        self.backbone = build_backbone(name="resnet_small", width=width, pretrained=pretrained)
        self.fc = nn.Linear(self.backbone.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.backbone.forward_features(x).mean(dim=(2, 3)))


def build_network(cfg: ClassifyModelConfig, num_classes: int) -> nn.Module:
    """The classifier of ``cfg``: :class:`Classifier` or a torchvision ResNet (torchvision's key layout)."""
    if cfg.backbone == "resnet_small":
        return Classifier(width=cfg.width, num_classes=num_classes, pretrained=cfg.pretrained)
    net = getattr(torchvision.models, cfg.backbone)(weights=None, num_classes=num_classes)
    if cfg.pretrained:
        from lowlabel.models.weights import load_torchvision_weights

        load_torchvision_weights(net, resolve_pretrained(cfg.pretrained, arch=cfg.backbone))
    return net


class ImageFolderDataset(torch.utils.data.Dataset):
    """``{"image": (3, crop, crop) float, "label": int, "index": int}`` for each image of an index."""

    def __init__(self, index: ImageFolderIndex, transform: v2.Transform) -> None:
        self.index = index
        self.transform = transform

    def __len__(self) -> int:
        return len(self.index.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        path, label = self.index.samples[i]
        return {"image": self.transform(to_image(load_rgb(path))), "label": label, "index": i}


def train_transform(cfg: ClassifyDataConfig) -> v2.Compose:
    return v2.Compose([v2.RandomResizedCrop(cfg.crop, scale=(cfg.min_scale, 1.0), antialias=True),
                       v2.RandomHorizontalFlip(), normalize()])


def eval_transform(cfg: ClassifyDataConfig) -> v2.Compose:
    resize = round(cfg.crop / cfg.eval_resize_ratio)
    return v2.Compose([v2.Resize(resize, antialias=True), v2.CenterCrop(cfg.crop), normalize()])


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> int:
    """How many rows of ``logits`` (N, C) have their label among the ``k`` highest scores (ties: torch.topk's)."""
    k = min(k, logits.shape[1])
    return int((logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1).sum())


def _root(cfg: ClassifyDataConfig) -> Path:
    from lowlabel.data import resolve_root

    return Path(resolve_root(cfg.root, "pretrain"))


class Classify:
    """Supervised classification; evaluation = top-1 / top-5 accuracy (percent) and per-class top-1."""

    name = "classify"

    def __init__(self, *, config: ClassifyConfig) -> None:
        self.config = config
        self.root = _root(config.data)
        self.train_index = index_split(self.root, config.data.train_split, train_split=config.data.train_split)
        self.classes, self.names = self.train_index.classes, self.train_index.names
        self.model = build_network(config.model, len(self.classes))

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {"model": build_optimizer(nets["model"].parameters(), self.config.optim)}

    def train_dataset(self) -> torch.utils.data.Dataset:
        return ImageFolderDataset(self.train_index, train_transform(self.config.data))

    def training_step(self, nets: Mapping[str, nn.Module], batch: dict[str, Any], step: int) -> StepOutput:
        logits = nets["model"](batch["image"])
        loss = F.cross_entropy(logits, batch["label"], label_smoothing=self.config.label_smoothing)
        acc = 100.0 * topk_correct(logits.detach(), batch["label"], 1) / len(logits)
        return StepOutput(losses={"model": loss}, logs={"loss": float(loss.detach()), "acc": acc})

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        cfg = self.config
        index = index_split(self.root, split, train_split=cfg.data.train_split)
        loader = torch.utils.data.DataLoader(ImageFolderDataset(index, eval_transform(cfg.data)),
                                             batch_size=cfg.trainer.batch_size, num_workers=cfg.trainer.num_workers)
        model = nets["model"]
        device = next(model.parameters()).device
        k = cfg.top_k
        correct1 = correctk = total = 0
        hits = torch.zeros(len(self.classes))
        counts = torch.zeros(len(self.classes))
        rows = []
        for batch in loader:
            logits = model(batch["image"].to(device)).float().cpu()
            labels = batch["label"]
            top1 = logits.argmax(1)
            correct1 += int((top1 == labels).sum())
            correctk += topk_correct(logits, labels, k)
            total += len(labels)
            counts += torch.bincount(labels, minlength=len(self.classes)).float()
            hits += torch.bincount(labels[top1 == labels], minlength=len(self.classes)).float()
            for i, label, pred in zip(batch["index"].tolist(), labels.tolist(), top1.tolist()):
                rows.append({"image": str(index.samples[i][0].relative_to(self.root)), "label": label, "pred": pred})
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        (Path(out_dir) / "predictions.json").write_text(json.dumps(rows))
        per_class = {name: (100.0 * float(h / c) if c else None) for name, h, c in zip(self.names, hits, counts)}
        metrics = {"top1": 100.0 * correct1 / max(total, 1), f"top{k}": 100.0 * correctk / max(total, 1)}
        return EvalResult(metrics=metrics, per_class={"top1": per_class}, monitor="top1")

    @torch.no_grad()
    def predict_batch(self, nets: Mapping[str, nn.Module], images: Sequence[torch.Tensor]) -> list[Classification]:
        """One :class:`~lowlabel.structures.Classification` per uint8 ``(3, H, W)`` image (nets in eval mode)."""
        model = nets["model"]
        device = next(model.parameters()).device
        transform = eval_transform(self.config.data)
        x = torch.stack([transform(tv_tensors.Image(torch.as_tensor(img))) for img in images]).to(device)
        probs = model(x).float().softmax(1).cpu()
        return [Classification(label=int(p.argmax()), score=float(p.max()), probs=p) for p in probs]

    def export_networks(self, nets: Mapping[str, nn.Module]) -> dict[str, ExportNet]:
        """The classifier as ``images -> logits`` for ``lowlabel export``."""
        crop = self.config.data.crop
        return {"model": ExportNet(
            module=nets["model"].eval(), example_inputs=(torch.randn(2, 3, crop, crop),), input_names=["images"],
            output_names=["logits"], dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}},
            outputs={"logits": "(B, C) class scores (softmax for probabilities)"}, image_size=(crop, crop),
            class_names=list(self.names))}

    def predict(self, nets: Mapping[str, nn.Module], inputs: Path, out: Path) -> None:
        """``predictions.json``: the top-k classes (names and probabilities) of every image in ``inputs``."""
        k = self.config.top_k

        def row(_out: Path, path: Path, _stem: str, _image: Any, pred: Classification) -> dict[str, Any]:
            top = pred.probs.topk(min(k, len(pred.probs)))
            return {"image": str(path), "label": pred.label, "name": self.names[pred.label], "score": pred.score,
                    "top": [[self.names[i], v] for v, i in zip(top.values.tolist(), top.indices.tolist())]}

        rows = predict_files(self.predict_batch, nets, Path(inputs), Path(out), row)
        (Path(out) / "predictions.json").write_text(json.dumps(rows, indent=1))


def build(cfg: ClassifyConfig) -> Classify:
    """The one place that reads the config."""
    return Classify(config=cfg)
