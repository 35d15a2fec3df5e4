"""Multi-label CAM baseline: training step, CAM maps, threshold seeds."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from lowlabel.methods.base import TrainerConfig
from lowlabel.methods.wsss import common, mlcam

from .voc_fake import write_fake_voc

torch.set_num_threads(1)


def small_config(root: Path) -> mlcam.MLCAMConfig:
    return mlcam.MLCAMConfig(
        data=common.DataConfig(root=str(root), train_split="train", crop=32, long_side=(32, 48)),
        model=common.ModelConfig(backbone="resnet_small", frozen_bn=False, freeze_stem=False, detach_stage=0),
        infer=common.InferConfig(scales=(1.0, 0.5), num_fixed_samples=2, num_worst_samples=1),
        threshold_range=(0.2, 0.8, 0.3),
        trainer=TrainerConfig(max_steps=2, batch_size=2, eval_split="train", log_every=1),
    )


def test_training_step_is_the_classification_loss_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    method = mlcam.build(small_config(write_fake_voc(tmp_path / "voc")))
    ds = method.train_dataset()
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    out = method.training_step(method.networks(), batch, 0)
    expected = torch.nn.functional.multilabel_soft_margin_loss(
        method.model(batch["image"]).cam.mean(dim=(2, 3)), batch["labels"])
    torch.testing.assert_close(out.losses["model"], expected)
    out.losses["model"].backward()
    assert all(p.grad is not None for p in method.model.parameters() if p.requires_grad)
    assert method.model.sides is None


def test_cam_maps_are_normalised_and_zero_for_absent_classes(tmp_path: Path) -> None:
    method = mlcam.build(small_config(write_fake_voc(tmp_path / "voc")))
    method.model.eval()
    s = method.data.split("train")[0]
    labels = s["labels"].float()
    cams, feats = method.cam_maps(method.model, common.normalize_image(s["image"]), labels)
    assert cams.shape == (20, 40, 48) and feats.dim() == 3
    assert float(cams.max()) <= 1.0 and float(cams.min()) >= 0.0
    absent = labels == 0
    assert float(cams[absent].abs().sum()) == 0.0
    for k in torch.nonzero(labels).flatten():
        assert float(cams[k].max()) == pytest.approx(1.0, abs=1e-3)  # each present class is max-normalised


@pytest.mark.parametrize("name", ["synth-quick", "synth-full", "voc12", "coco14"])
def test_real_config_runs_on_a_fake_dataset_in_its_layout(name: str, tmp_path: Path) -> None:
    from .wsss_configs import CONFIGS, check_config

    check_config(mlcam, CONFIGS / "mlcam" / f"{name}.yaml", tmp_path)


def test_own_split_threshold_sweep_matches_the_seeds_when_the_split_is_the_same(tmp_path: Path) -> None:
    """With the threshold searched on the evaluated split, the eval_cam.py-style sweep must agree with the seeds."""
    torch.manual_seed(0)
    cfg = small_config(write_fake_voc(tmp_path / "voc"))
    method = mlcam.build(dataclasses.replace(cfg, threshold_split="train"))
    result = method.evaluate(method.networks(), "train", tmp_path / "eval")
    m = result.metrics
    assert m["own_best_threshold"] == m["bg_threshold"]
    assert m["mIoU_own_best_threshold"] == pytest.approx(m["mIoU"], abs=1e-9)


def test_own_split_threshold_sweep_is_at_least_the_held_out_choice(tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = small_config(write_fake_voc(tmp_path / "voc"))
    method = mlcam.build(dataclasses.replace(cfg, threshold_split="val"))
    m = method.evaluate(method.networks(), "train", tmp_path / "eval").metrics
    assert m["own_best_threshold"] in cfg.thresholds and m["bg_threshold"] in cfg.thresholds
    assert m["mIoU_own_best_threshold"] >= m["mIoU"] - 1e-9
