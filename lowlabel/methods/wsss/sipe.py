"""SIPE: self-supervised image-specific prototype exploration for weakly-supervised semantic segmentation.

SIPE, CVPR 2022, Chen et al., "Self-supervised Image-specific Prototype Exploration for WSSS".

Training (``SIPE.training_step``, see ``lowlabel/losses/sipe.py`` for the tensor pieces):
a multi-label CAM on the last stage, ``L_cls = multilabel_soft_margin(GAP(cam), y)``; normalised maps with a
background map prepended; structure-aware seeds (argmax of the soft IoU between each pixel's structure map
and each class map, background IoU x 0.5); prototypes = seed-masked means of the hierarchical features
(side 1x1 convs on the four detached stages, L2-normalised, resized to the stride-16 size, concatenated);
IS-CAM = relu(cos(F_h, p_k)); ``L = L_cls + L_GSC`` with ``L_GSC = mean |M - IS / max IS|``.

Choices about the official code (``chenqi1126/SIPE``), made deliberately:

* **Effective momentum.** IRN's ``PolyOptimizer`` passes ``weight_decay`` positionally into SGD's momentum
  slot, so the published runs used momentum 1e-4, i.e. plain SGD with lr 0.1 (x10 for new layers). The
  real configs (``voc12.yaml``, ``coco14.yaml``) reproduce that: ``optim.momentum: 1.0e-4`` with a comment.
  With momentum 0.9 the same lr would take steps about 10x larger, so changing one without the other is
  not a faithful "fix". ShapesWorld configs train from scratch and use their own tuned values.
* **alpha in the background map.** The paper writes ``M_b = (1 - max_k M_k)^alpha``; the code uses alpha = 1
  (no exponent). We default to alpha = 1 (the published numbers come from it) and expose ``sipe.bg_alpha``.
* **Seeding features.** Training seeds use x4 (the last stage), inference seeds use the hierarchical
  features, as the official ``Net``/``CAM`` classes do; ``sipe.train_seed_features`` switches training.
* **Absent classes at inference.** The official ``CAM.forward`` seeds with every class's map: absent classes
  may win the seed argmax (those pixels then feed no kept prototype), and only {background} + the image's
  classes are kept afterwards. By default we zero absent classes' maps before seeding, as training does
  (``sipe.seed_classes: labels``); ``sipe.seed_classes: all`` is the official behaviour. Measured on
  ShapesWorld in ``benchmarks/README.md`` (SIPE: which classes compete for seeds).
* **Structure affinity.** The official code materialises B x K1 x N x N; we compute ``S @ M^T`` in row chunks,
  O(B x chunk x N) memory, with identical values (``benchmarks/sipe_step.py``).

Ablation switches (``--sipe.<name> false``): ``use_gsc`` (the loss; without it training is vanilla CAM),
``use_bg_prototype`` (without it, IS-CAM's background channel is ``1 - max_k IS_k`` instead of the
background prototype's map), ``use_structure_seeds`` (without it, seeds are the argmax of the CAM with its
background map), ``use_hierarchical`` (without it, prototypes live on the last-stage features only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lowlabel.losses import sipe as L
from lowlabel.methods.base import EvalResult, ExportNet, OptimConfig, StepOutput, TrainerConfig
from lowlabel.methods.predict import predict_files
from lowlabel.methods.wsss import common, inference
from lowlabel.models.seg_nets import CAMOutput
from lowlabel.structures import Segmentation


@dataclass
class SIPEParams:
    """The method's own switches and constants (paper / official values by default)."""

    use_gsc: bool = True
    use_bg_prototype: bool = True
    use_structure_seeds: bool = True
    use_hierarchical: bool = True
    train_seed_features: str = "x4"  # "x4" (official training) or "hierarchical" (as at inference)
    bg_alpha: float = 1.0  # exponent of the background map; the official code uses 1 (see module docstring)
    bg_iou_weight: float = 0.5  # official get_seed: miou[:, 0] *= 0.5
    gsc_weight: float = 1.0  # L = L_cls + gsc_weight * L_GSC (equal weights in the paper)
    chunk_size: int = 1024  # rows of the N x N structure map computed at once
    # inference: which classes' maps compete for seeds; "labels" = background + the image's classes (as in
    # training), "all" = every class, absent ones dropped after the prototypes (official make_cam.py)
    seed_classes: str = "labels"

    def __post_init__(self) -> None:
        if self.train_seed_features not in ("x4", "hierarchical"):
            raise ValueError(f"sipe.train_seed_features must be x4 or hierarchical, got {self.train_seed_features!r}")
        if self.seed_classes not in ("labels", "all"):
            raise ValueError(f"sipe.seed_classes must be labels or all, got {self.seed_classes!r}")
        if self.bg_alpha <= 0 or self.chunk_size < 1:
            raise ValueError("sipe.bg_alpha must be > 0 and sipe.chunk_size >= 1")


@dataclass
class SIPEConfig:
    """Everything ``lowlabel train sipe`` reads."""

    data: common.DataConfig = field(default_factory=common.DataConfig)
    model: common.ModelConfig = field(default_factory=common.ModelConfig)
    sipe: SIPEParams = field(default_factory=SIPEParams)
    infer: common.InferConfig = field(default_factory=common.InferConfig)
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(batch_size=16, eval_split="train"))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        lr=0.1, momentum=1e-4, weight_decay=1e-4, schedule="poly", power=0.9, grad_clip=1.0))
    lr_mult: float = 10.0  # new layers (classifier, side convs) train at lr x 10 (official)


CONFIG = SIPEConfig


def sipe_maps(out: CAMOutput, valid: Tensor, params: SIPEParams, *, seed_features: Tensor) -> dict[str, Tensor]:
    """Normalised CAM with background, seeds, prototypes and IS-CAM from one forward pass.

    Args:
        out: the network output (``hier`` must be set).
        valid: (B, K1, h, w) or (B, K1, 1, 1) 0/1: crop-valid region x [1, labels].
        params: the SIPE switches.
        seed_features: (B, C, h, w) features for the structure map.

    Returns:
        ``norm_cam``, ``seeds``, ``prototypes``, ``is_cam`` (each (B, K1, ...)).
    """
    assert out.hier is not None
    feats = out.hier if params.use_hierarchical else out.x4
    size = feats.shape[2:]
    norm_cam = L.with_background(out.cam, alpha=params.bg_alpha)  # (B, K1, h, w)
    norm_cam = F.interpolate(norm_cam, size=size, mode="bilinear", align_corners=True) * valid
    if params.use_structure_seeds:
        seeds = L.structure_seeds(norm_cam, seed_features, valid, bg_iou_weight=params.bg_iou_weight,
                                  chunk_size=params.chunk_size)
    else:
        seeds = F.one_hot(norm_cam.argmax(1), norm_cam.shape[1]).permute(0, 3, 1, 2).to(norm_cam.dtype) * valid
    protos = L.prototypes(seeds, feats)
    iscam = L.is_cam(protos, feats)
    if not params.use_bg_prototype:
        iscam = torch.cat([1.0 - iscam[:, 1:].amax(1, keepdim=True), iscam[:, 1:]], dim=1)
    return {"norm_cam": norm_cam, "seeds": seeds, "prototypes": protos, "is_cam": iscam}


class SIPEInference(nn.Module):
    """SIPE's network for export, one scale: ``images`` (B, 3, H, W) normalised and ``labels`` (B, K) 0/1 (the image's
    classes; lowlabel's predict takes the classifier's) -> ``logits`` (B, K), ``cams`` (B, K, h, w) = relu(CAM) and
    ``is_cam`` (B, K+1, h, w): background first, absent classes 0, as :meth:`SIPE.score_maps` makes it per scale."""

    def __init__(self, model: nn.Module, params: SIPEParams) -> None:
        super().__init__()
        self.model = model
        self.params = params

    def forward(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out: CAMOutput = self.model(images)
        assert out.hier is not None
        lab1 = torch.cat([labels.new_ones(labels.shape[0], 1), labels], dim=1)[:, :, None, None]  # (B, K1, 1, 1)
        seeding = lab1 if self.params.seed_classes == "labels" else torch.ones_like(lab1)
        # one chunk: the structure map of every cell at once (export traces no loop over a dynamic size)
        params = dataclasses.replace(self.params, chunk_size=out.hier.shape[2] * out.hier.shape[3])
        is_cam = sipe_maps(out, seeding, params, seed_features=out.hier)["is_cam"] * lab1
        return out.cam.mean(dim=(2, 3)), F.relu(out.cam), is_cam


class SIPE:
    """The SIPE method (training + multi-scale inference + evaluation)."""

    name = "sipe"

    def __init__(self, *, config: SIPEConfig) -> None:
        self.config = config
        self.data = common.WSSSData(config.data)
        self.num_classes = self.data.num_classes
        self.model = common.build_cam_net(config.model, self.num_classes, side_features=True)

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self, nets: Mapping[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        return {"model": common.two_group_optimizer(nets["model"], self.config.optim, self.config.lr_mult)}

    def train_dataset(self) -> torch.utils.data.Dataset:
        return self.data.train_set()

    def training_step(self, nets: Mapping[str, nn.Module], batch: Any, step: int) -> StepOutput:
        p = self.config.sipe
        x, labels = batch["image"], batch["labels"].float()
        out: CAMOutput = nets["model"](x)
        l_cls = F.multilabel_soft_margin_loss(out.cam.mean(dim=(2, 3)), labels)
        logs = {"loss_cls": float(l_cls.detach())}
        loss = l_cls
        if p.use_gsc:
            valid = common.valid_maps(batch["valid"], labels, out.x4.shape[2:])  # (B, K1, h, w)
            assert out.hier is not None
            seed_feats = out.x4 if p.train_seed_features == "x4" else out.hier
            maps = sipe_maps(out, valid, p, seed_features=seed_feats.detach())
            l_gsc = L.gsc_loss(maps["norm_cam"], maps["is_cam"])
            loss = loss + p.gsc_weight * l_gsc
            logs["loss_gsc"] = float(l_gsc.detach())
        logs["loss"] = float(loss.detach())
        return StepOutput(losses={"model": loss}, logs=logs)

    @torch.no_grad()
    def score_maps(self, model: nn.Module, image: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Multi-scale + flip IS-CAM for one image: ((K1, H, W) scores, absent classes 0; (C, h, w) features)."""
        cfg, p = self.config.infer, self.config.sipe
        lab1 = torch.cat([labels.new_ones(1), labels]).view(1, -1, 1, 1)  # (1, K1, 1, 1)
        seeding = lab1 if p.seed_classes == "labels" else torch.ones_like(lab1)

        def maps(out: CAMOutput) -> tuple[Tensor, Tensor]:
            feats = out.hier if p.use_hierarchical else out.x4
            return sipe_maps(out, seeding, p, seed_features=out.hier)["is_cam"], feats

        scores, feats = common.multiscale_maps(model, image, scales=cfg.scales, flip=cfg.flip, maps=maps, eps=L.EPS)
        return scores * lab1[0], feats

    def evaluate(self, nets: Mapping[str, nn.Module], split: str, out_dir: Path) -> EvalResult:
        model = nets["model"]
        return inference.evaluate_maps(lambda img, lab: self.score_maps(model, img, lab), self.data, split,
                                       Path(out_dir), self.config.infer)

    @torch.no_grad()
    def predict_batch(self, nets: Mapping[str, nn.Module], images: Sequence[Tensor]) -> list[Segmentation]:
        """Seeds and pseudo masks of uint8 ``(3, H, W)`` images, for the classes the classifier finds (eval mode)."""
        model = nets["model"]
        return inference.segment(model, lambda img, lab: self.score_maps(model, img, lab), images, self.config.infer)

    def export_networks(self, nets: Mapping[str, nn.Module]) -> dict[str, ExportNet]:
        """The network as ``(images, labels) -> (logits, cams, is_cam)`` for ``lowlabel export`` (one scale)."""
        model, size, k = nets["model"], self.config.data.crop, self.num_classes
        labels = torch.zeros(2, k)
        labels[0, 0] = labels[1, k - 1] = 1.0
        return {"model": inference.export_net(
            SIPEInference(model, self.config.sipe), model,
            inputs={"images": torch.randn(2, 3, size, size), "labels": labels},
            outputs={"logits": "(B, K) multi-label scores; sigmoid > 0.5 = the classes present (lowlabel's predict)",
                     "cams": "(B, K, h, w) relu(CAM)",
                     "is_cam": "(B, K+1, h, w) IS-CAM in [0, 1], background first, classes not in labels 0; "
                               "lowlabel sums scales and flips and divides each map by its max"},
            class_names=self.data.class_names)}

    def predict(self, nets: Mapping[str, nn.Module], inputs: Path, out: Path) -> None:
        """``seeds/``, ``pseudo/`` (VOC palette PNGs) and ``overlays/`` for every image in ``inputs``."""
        predict_files(self.predict_batch, nets, Path(inputs), Path(out), inference.write_segmentation)


def build(cfg: SIPEConfig) -> SIPE:
    """The one place that reads the config."""
    return SIPE(config=cfg)
