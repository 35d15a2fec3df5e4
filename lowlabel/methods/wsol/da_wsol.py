"""DA-WSOL: weakly-supervised object localization as domain adaptation.

DA-WSOL, Zhu et al., CVPR 2022, arXiv:2203.01714. The image features s = GAP(P) are the source domain,
the pixel features P the target domain. On top of CAM's cross-entropy L_c, each step:

1. the Target Sample Assigner (:mod:`lowlabel.losses.tsa`) splits every image's pixels into unknown-class
   T^u, pseudo-source T^f and true-target T^t (3-way k-means from [M_0; s_i; M_y]) and samples
   S_i = [s_i; 31 T^f pixels] and T_i = 32 T^t pixels;
2. L_d = mean over images of the linear-time multi-kernel MMD(S_i, T_i) (:mod:`lowlabel.losses.mmd`);
3. L_u = mean of the T^u features (:mod:`lowlabel.losses.universum`);
4. L = L_c + beta L_d + univer L_u, with L_d and L_u switched on from ``da.start_step``.

The memory of the assigner lives in the buffers of a network without parameters (``networks()["tsa"]``):
the engine moves it to the device and saves it in checkpoints, and no optimizer touches it. With several
devices each process keeps its own memory (rank 0's is checkpointed).

    lowlabel train da_wsol --config configs/da_wsol/synth-quick.yaml
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lowlabel.losses.mmd import mmd_linear
from lowlabel.losses.tsa import UNIVERSUM, TargetSampleAssigner
from lowlabel.losses.universum import universum_loss
from lowlabel.methods.base import StepOutput
from lowlabel.methods.wsol.cam import CAMConfig, CAMMethod, build_parts
from lowlabel.methods.wsol.common import as_labels, count_correct


@dataclass
class DAConfig:
    """The domain-adaptation terms (paper defaults; per-dataset values are in configs/da_wsol/)."""

    beta: float = 0.3  # lambda_1, weight of the MMD term L_d (DA-WSOL --beta, config default 0.3)
    univer: float = 0.3  # lambda_2, weight of the Universum term L_u (DA-WSOL --univer, default 0.3)
    start_step: int = 0  # L_d and L_u from this optimizer step on (DA-WSOL: after epoch `start_epoch`)
    num_source: int = 32  # |S_i| = 1 image feature + 31 pseudo-source pixels (sample_num_source)
    num_target: int = 32  # |T_i| true-target pixels (sample_num_target)
    kernel_mul: float = 2.0
    kernel_num: int = 5
    # Which centroid updates the class anchor M_y: "target" = the T^t cluster, as the paper describes the
    # memory (anchors of T^u and T^t); "source" = the T^f cluster, as the official code does.
    class_anchor_from: Literal["target", "source"] = "target"
    kmeans_max_iter: int = 300  # scikit-learn k_means defaults, as the official code
    kmeans_tol: float = 1e-4

    def __post_init__(self) -> None:
        if self.beta < 0 or self.univer < 0 or self.start_step < 0:
            raise ValueError(f"da.beta, da.univer, da.start_step must be >= 0, got {self.beta}, {self.univer}, "
                             f"{self.start_step}")


@dataclass
class DAWSOLConfig(CAMConfig):
    """Config of ``lowlabel train da_wsol``: CAM's plus the ``da`` section."""

    da: DAConfig = field(default_factory=DAConfig)


class DAWSOL(CAMMethod):
    """CAM + Target Sample Assigner + MMD + Universum (module docstring)."""

    name = "da_wsol"

    def __init__(self, *, config: DAWSOLConfig, tsa: TargetSampleAssigner, **parts: Any) -> None:
        super().__init__(config=config, **parts)
        self.tsa = tsa

    def networks(self) -> dict[str, nn.Module]:
        return {"model": self.model, "tsa": self.tsa}

    def training_step(self, nets: Mapping[str, nn.Module], batch: dict[str, Any], step: int) -> StepOutput:
        images = batch["image"]
        labels = as_labels(batch, self.num_classes, images.device)
        out = nets["model"](images)
        cls = F.cross_entropy(out.logits, labels)
        logs = {"cls": float(cls.detach()), "acc": count_correct(out.logits, labels)}
        da = self.config.da
        if step < da.start_step:
            return StepOutput(losses={"model": cls}, logs=logs)
        l_d, l_u, kept = self.da_losses(nets["tsa"], out.features, out.pooled, labels)
        loss = cls + da.beta * l_d + da.univer * l_u
        logs.update({"mmd": float(l_d.detach()), "universum": float(l_u.detach()), "kept": kept})
        return StepOutput(losses={"model": loss}, logs=logs)

    def da_losses(self, tsa: TargetSampleAssigner, features: torch.Tensor, pooled: torch.Tensor,
                  labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """``(L_d, L_u, fraction of images with enough samples)`` for features ``(B, D, h, w)``; updates ``tsa``."""
        b, d, h, w = features.shape
        pixels = features.flatten(2).transpose(1, 2)  # (B, h*w, D)
        assignment = tsa.assign(pixels, pooled, labels)  # (B, h*w)
        samples = tsa.sample(pixels, pooled, assignment)
        da = self.config.da
        if samples.keep.any():
            l_d = mmd_linear(samples.source, samples.target, kernel_mul=da.kernel_mul, kernel_num=da.kernel_num).mean()
        else:
            l_d = features.sum() * 0.0  # no image has enough samples: no MMD this step
        l_u = universum_loss(features, (assignment == UNIVERSUM).view(b, h, w))
        return l_d, l_u, float(samples.keep.float().mean())


def build(cfg: DAWSOLConfig) -> DAWSOL:
    """The DA-WSOL method of ``cfg`` (reads the train metadata for the number of classes)."""
    parts = build_parts(cfg)
    da = cfg.da
    tsa = TargetSampleAssigner(num_classes=parts["num_classes"], dim=parts["model"].backbone.num_features,
                               num_source=da.num_source, num_target=da.num_target,
                               class_anchor_from=da.class_anchor_from, max_iter=da.kmeans_max_iter,
                               tol=da.kmeans_tol)
    return DAWSOL(tsa=tsa, **parts)


CONFIG = DAWSOLConfig
