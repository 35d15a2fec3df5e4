"""Shared check of the real config files of sipe/mlcam/seg on a tiny fake dataset in the layout they name."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from lowlabel.engine.config import load_config_file

from .voc_fake import write_fake_voc

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def fake_root_for(cfg_data: object, tmp_path: Path) -> tuple[Path, str]:
    """A fake dataset matching the config's layout: VOC + XML, or COCO-in-VOC with an 80-class cls_labels.npy."""
    root = write_fake_voc(tmp_path / "data", num_train=3, num_val=2, num_aug=1)
    label_list = ""
    if getattr(cfg_data, "label_list", ""):
        ids = [p.stem for p in (root / "JPEGImages").glob("*.jpg")]
        k = 80 if cfg_data.classes == "coco" else 20  # type: ignore[attr-defined]
        table = {i: np.eye(k, dtype=np.float32)[n % 3] for n, i in enumerate(sorted(ids))}
        np.save(root / "cls_labels.npy", table, allow_pickle=True)
        label_list = str(root / "cls_labels.npy")
    if not getattr(cfg_data, "with_xml", True):
        shutil.rmtree(root / "Annotations")
    return root, label_list


def check_config(module: ModuleType, path: Path, tmp_path: Path) -> None:
    """Load ``path`` as the method's config, point it at a fake dataset, build, and run one training step."""
    cfg = load_config_file(module.CONFIG, path)
    root, label_list = fake_root_for(cfg.data, tmp_path)
    cfg.data.root, cfg.data.label_list = str(root), label_list
    cfg.data.crop, cfg.data.long_side = 32, (32, 48)
    if hasattr(cfg.model, "pretrained"):
        cfg.model.pretrained = ""  # no downloads in tests
    else:
        cfg.model.pretrained_backbone = ""
    if hasattr(cfg, "pseudo_dir"):
        pseudo = tmp_path / "pseudo"
        pseudo.mkdir()
        train_ids = (root / "ImageSets" / "Segmentation" / f"{cfg.data.train_split}.txt").read_text().split()
        for i in train_ids:  # the aug id has no GT: give it the mask of a train id
            src = root / "SegmentationClass" / f"{i}.png"
            shutil.copy(src if src.is_file() else next((root / "SegmentationClass").glob("*.png")), pseudo / f"{i}.png")
        cfg.pseudo_dir = str(pseudo)
    method = module.build(cfg)
    ds = method.train_dataset()
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    out = method.training_step(method.networks(), batch, 0)
    assert torch.isfinite(out.losses["model"])
