"""Stages: ``seg`` starts from a seed-stage run named by ``init_from`` (``lowlabel.models.weights.read_stage``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from lowlabel.errors import DataError, UserError
from lowlabel.methods.wsss import seg
from lowlabel.models.weights import CHECKPOINT_FORMAT, read_stage

from .test_seg import pseudo_from_gt, small_config
from .voc_fake import write_fake_voc


def fake_run(folder: Path, method: str) -> Path:
    """A run folder whose checkpoint says it is a run of ``method``."""
    (folder / "checkpoints").mkdir(parents=True)
    torch.save({"format": CHECKPOINT_FORMAT, "method": method, "config": {}, "nets": {"model": {}}},
               folder / "checkpoints" / "last.ckpt")
    return folder


def test_seg_trains_on_the_pseudo_masks_of_the_init_from_run(tmp_path: Path) -> None:
    root = write_fake_voc(tmp_path / "voc")
    run = fake_run(tmp_path / "sipe-run", "sipe")
    pseudo_from_gt(root, run / "eval" / "train" / "pseudo")
    cfg = dataclasses.replace(small_config(root, ""), init_from=str(run))
    method = seg.build(cfg)
    assert method.pseudo_dir == run / "eval" / "train" / "pseudo"
    assert method.train_dataset()[0]["mask"].shape == (32, 32)
    explicit = tmp_path / "elsewhere"
    pseudo_from_gt(root, explicit)
    assert seg.build(dataclasses.replace(cfg, pseudo_dir=str(explicit))).pseudo_dir == explicit  # pseudo_dir wins


def test_init_from_errors_name_the_file_and_what_is_wrong(tmp_path: Path) -> None:
    root = write_fake_voc(tmp_path / "voc")
    cfg = small_config(root, "")
    with pytest.raises(DataError, match="seg needs init_from"):
        seg.build(cfg)
    with pytest.raises(FileNotFoundError, match=f"init_from {tmp_path / 'nowhere'} does not exist"):
        seg.build(dataclasses.replace(cfg, init_from=str(tmp_path / "nowhere")))
    cam_run = fake_run(tmp_path / "cam-run", "cam")
    with pytest.raises(UserError, match=r"last.ckpt: a run of 'cam'; init_from of seg needs 'sipe' or 'mlcam'"):
        seg.build(dataclasses.replace(cfg, init_from=str(cam_run)))
    weights = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(1)}, weights)
    with pytest.raises(UserError, match="is not a run folder"):
        seg.build(dataclasses.replace(cfg, init_from=str(weights)))
    sipe_run = fake_run(tmp_path / "sipe-run", "sipe")
    with pytest.raises(DataError, match=r"no pseudo masks .* `lowlabel evaluate sipe --ckpt .*sipe-run --split train`"):
        seg.build(dataclasses.replace(cfg, init_from=str(sipe_run)))


def test_read_stage_accepts_files_that_do_not_name_their_method(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    torch.save({"state_dict": {"module.conv.weight": torch.ones(2)}}, weights)
    stage = read_stage(weights, stage="x", accepts=("sipe",))
    assert stage.method is None and list(stage.nets[""]) == ["conv.weight"]
    assert len(stage.sha256()) == 64
