"""Stages: ``seg`` starts from a seed-stage run named by ``init_from`` (``lowlabel.models.weights.read_stage``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import lowlabel.data
from lowlabel.data import resolve_root, shapesworld_versions
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
        seg.build(cfg).train_dataset()
    with pytest.raises(FileNotFoundError, match=f"init_from {tmp_path / 'nowhere'} does not exist"):
        seg.build(dataclasses.replace(cfg, init_from=str(tmp_path / "nowhere"))).train_dataset()
    cam_run = fake_run(tmp_path / "cam-run", "cam")
    with pytest.raises(UserError, match=r"last.ckpt: a run of 'cam'; init_from of seg needs 'sipe' or 'mlcam'"):
        seg.build(dataclasses.replace(cfg, init_from=str(cam_run))).train_dataset()
    weights = tmp_path / "w.pth"
    torch.save({"a": torch.zeros(1)}, weights)
    with pytest.raises(UserError, match="is not a run folder"):
        seg.build(dataclasses.replace(cfg, init_from=str(weights))).train_dataset()
    sipe_run = fake_run(tmp_path / "sipe-run", "sipe")
    with pytest.raises(DataError, match=r"no pseudo masks .* `lowlabel evaluate sipe --ckpt .*sipe-run --split train`"):
        seg.build(dataclasses.replace(cfg, init_from=str(sipe_run))).train_dataset()


def test_read_stage_accepts_files_that_do_not_name_their_method(tmp_path: Path) -> None:
    weights = tmp_path / "w.pth"
    torch.save({"state_dict": {"module.conv.weight": torch.ones(2)}}, weights)
    stage = read_stage(weights, stage="x", accepts=("sipe",))
    assert stage.method is None and list(stage.nets[""]) == ["conv.weight"]
    assert len(stage.sha256()) == 64


def test_read_stage_refuses_a_run_trained_on_another_shapesworld_version(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lowlabel.data, "_READ_VERSIONS", {})
    world = tmp_path / "world"  # a ShapesWorld output folder whose manifest records coco/ at 1.6
    (world / "coco").mkdir(parents=True)
    (world / "manifest.json").write_text(json.dumps({"version": "1.6", "versions": {"coco": "1.6"},
                                                     "files": {"coco/a.json": {"sha256": "0", "bytes": 1}}}))
    run = fake_run(tmp_path / "teacher", "clip")
    read_stage(run, stage="ovd")  # nothing resolved yet, and no record: no check
    (run / "env.json").write_text(json.dumps({"shapesworld": {"coco": "1.5", "voc": "1.2"}}))
    read_stage(run, stage="ovd")  # still nothing resolved in this process
    assert resolve_root(str(world), "coco") == world / "coco" and shapesworld_versions() == {"coco": "1.6"}
    for named in (run, run / "checkpoints" / "last.ckpt"):
        with pytest.raises(UserError, match=r"teacher: trained on ShapesWorld coco/ 1.5, but this ovd run reads "
                                            r"coco/ 1.6; retrain it on the current data"):
            read_stage(named, stage="ovd")
    (run / "env.json").write_text(json.dumps({"shapesworld": {"coco": "1.6", "voc": "1.2"}}))
    assert read_stage(run, stage="ovd").method == "clip"  # same version; voc/ is not read here
    assert resolve_root(str(world / "coco"), "coco") == world / "coco"  # the kind folder itself is noted too
