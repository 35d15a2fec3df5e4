"""Segmentation stage: pseudo-mask folder checks, one training step, the small DeepLabV3."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lowlabel.engine.loop import evaluate_nets
from lowlabel.errors import DataError
from lowlabel.methods.base import TrainerConfig
from lowlabel.methods.wsss import common, seg

from .voc_fake import write_fake_voc

torch.set_num_threads(1)


def pseudo_from_gt(root: Path, out: Path, split: str = "train") -> Path:
    """Pseudo masks = the GT masks with the 255 band, copied (a stand-in for SIPE's output)."""
    out.mkdir(parents=True, exist_ok=True)
    for image_id in (root / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split():
        shutil.copy(root / "SegmentationClass" / f"{image_id}.png", out / f"{image_id}.png")
    return out


def small_config(root: Path, pseudo: Path | str) -> seg.SegConfig:
    return seg.SegConfig(
        data=common.DataConfig(root=str(root), train_split="train", crop=32, long_side=(32, 48)),
        pseudo_dir=str(pseudo),
        model=seg.SegModelConfig(arch="deeplabv3_small"),
        trainer=TrainerConfig(max_steps=2, batch_size=2, eval_split="val", log_every=1),
    )


def test_training_step_uses_the_pseudo_masks_with_ignore(tmp_path: Path) -> None:
    torch.manual_seed(0)
    root = write_fake_voc(tmp_path / "voc")
    method = seg.build(small_config(root, pseudo_from_gt(root, tmp_path / "pseudo")))
    ds = method.train_dataset()
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["mask"].shape == (2, 32, 32) and set(batch["mask"].unique().tolist()) <= {0, 1, 2, 3, 255}
    method.model.eval()  # no dropout / batch statistics, so two forward passes agree
    out = method.training_step(method.networks(), batch, 0)
    logits = method.model(batch["image"])
    assert logits.shape == (2, 21, 32, 32)
    expected = torch.nn.functional.cross_entropy(logits, batch["mask"], ignore_index=255)
    torch.testing.assert_close(out.losses["model"], expected)
    # An all-ignore target contributes nothing: the loss is NaN-free only over labelled pixels.
    batch["mask"][:] = 255
    batch["mask"][0, 0, 0] = 1
    one = method.training_step(method.networks(), batch, 0).losses["model"]
    torch.testing.assert_close(one, -torch.log_softmax(method.model(batch["image"])[0, :, 0, 0], 0)[1])


def test_pseudo_mask_folder_with_missing_files_is_a_clear_error(tmp_path: Path) -> None:
    root = write_fake_voc(tmp_path / "voc")
    pseudo = pseudo_from_gt(root, tmp_path / "pseudo")
    (pseudo / "2007_train002.png").unlink()
    with pytest.raises(DataError, match=r"misses 1 of 4 masks of split 'train', e.g. .*2007_train002.png"):
        seg.build(small_config(root, pseudo)).train_dataset()
    with pytest.raises(DataError, match="pseudo-mask folder not found"):
        seg.build(small_config(root, tmp_path / "nowhere")).train_dataset()


def test_predict_writes_masks(tmp_path: Path) -> None:
    root = write_fake_voc(tmp_path / "voc", num_val=1, num_aug=0)
    method = seg.build(small_config(root, pseudo_from_gt(root, tmp_path / "pseudo")))
    method.predict(method.networks(), root / "JPEGImages", tmp_path / "out")
    mask = np.array(Image.open(tmp_path / "out" / "masks" / "2007_val000.png"))
    assert mask.shape == (40, 48) and mask.max() <= 20


@pytest.mark.parametrize("name", ["synth-quick", "synth-full", "voc12", "coco14"])
def test_real_config_runs_on_a_fake_dataset_in_its_layout(name: str, tmp_path: Path) -> None:
    from .wsss_configs import CONFIGS, check_config

    check_config(seg, CONFIGS / "seg" / f"{name}.yaml", tmp_path)


def test_training_learns_the_pseudo_masks(tmp_path: Path) -> None:
    """A few dozen steps of the method's own loss and optimizer fit 4 fake images: the loss falls and the train
    mIoU rises well above what the all-background prediction scores."""
    torch.manual_seed(0)
    root = write_fake_voc(tmp_path / "voc", num_val=1, num_aug=0)
    cfg = small_config(root, pseudo_from_gt(root, tmp_path / "pseudo"))
    cfg.data.long_side = (48, 48)  # the whole 40x48 image in every crop
    cfg.data.crop = 48
    method = seg.build(cfg)
    nets = method.networks()
    opt = method.optimizers(nets)["model"]
    ds = method.train_dataset()
    losses = []
    for step in range(40):
        batch = torch.utils.data.default_collate([ds[i] for i in range(len(ds))])
        loss = method.training_step(nets, batch, step).losses["model"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert np.mean(losses[-5:]) < 0.3 * np.mean(losses[:5]), losses
    res = evaluate_nets(method, nets, split="train", out_dir=tmp_path / "eval")  # eval mode, as the engine runs it
    # predicting all background scores 21.0 here (background IoU 0.84, 0 for the 3 object classes); 40 steps reach ~58
    assert res.metrics["mIoU"] > 45.0, res.metrics
