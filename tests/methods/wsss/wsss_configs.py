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


# What the papers / official code fix for the real (VOC12, COCO14) configs, as resolved-config attribute paths.
# sipe/mlcam: chenqi1126/SIPE train_resnet50_SIPE.py + make_cam.py (IRN's PolyOptimizerSGD); max_step = (N // 16) * 5.
_CAM_STAGE = {
    "data.crop": 512, "data.long_side": (320, 640), "infer.scales": (1.0, 0.5, 1.5, 2.0), "infer.flip": True,
    "model.backbone": "resnet50_os16", "model.frozen_bn": True, "model.freeze_stem": True, "model.detach_stage": 2,
    "trainer.batch_size": 16, "optim.name": "sgd", "optim.lr": 0.1, "lr_mult": 10.0, "optim.schedule": "poly",
    "optim.power": 0.9, "optim.weight_decay": 1e-4, "optim.grad_clip": 1.0,
}  # fmt: skip
# seg: the DeepLab recipe its YAML states (crop 512, batch 16, SGD 0.01 with head x10, momentum 0.9, wd 1e-4, poly 0.9).
_SEG_STAGE = {
    "data.crop": 512, "data.long_side": (320, 640), "model.arch": "deeplabv3_resnet101", "trainer.batch_size": 16,
    "optim.name": "sgd", "optim.lr": 0.01, "lr_mult": 10.0, "optim.momentum": 0.9, "optim.weight_decay": 1e-4,
    "optim.schedule": "poly", "optim.power": 0.9,
}  # fmt: skip
PAPER_VALUES = {
    ("sipe", "voc12"): {**_CAM_STAGE, "data.train_split": "train_aug", "trainer.max_steps": (10582 // 16) * 5},
    ("sipe", "coco14"): {**_CAM_STAGE, "trainer.max_steps": (82081 // 16) * 5},
    ("mlcam", "voc12"): {**_CAM_STAGE, "data.train_split": "train_aug", "trainer.max_steps": (10582 // 16) * 5},
    ("mlcam", "coco14"): {**_CAM_STAGE, "trainer.max_steps": (82081 // 16) * 5},
    ("seg", "voc12"): {**_SEG_STAGE, "data.train_split": "train_aug"},
    ("seg", "coco14"): _SEG_STAGE,
}


def _resolved(cfg: object, dotted: str) -> object:
    value = cfg
    for name in dotted.split("."):
        value = getattr(value, name)
    return tuple(value) if isinstance(value, list | tuple) else value


def check_paper_values(method: str, name: str, cfg: object) -> None:
    """The resolved config of a real config file keeps the values the paper fixes (no-op for synth configs)."""
    expected = PAPER_VALUES.get((method, name))
    if expected is None:
        assert name.startswith("synth"), f"no paper values recorded for {method}/{name}.yaml"
        return
    wrong = {k: (_resolved(cfg, k), v) for k, v in expected.items() if _resolved(cfg, k) != v}
    assert not wrong, f"{method}/{name}.yaml: (resolved, paper) differ: {wrong}"


def check_one_step_moves_weights(method: object, batch: dict) -> None:
    """One optimizer step on the method's loss changes some trainable weight and no frozen one."""
    nets = method.networks()  # type: ignore[attr-defined]
    optimizers = method.optimizers(nets)  # type: ignore[attr-defined]
    before = {f"{n}.{k}": p.detach().clone() for n, net in nets.items() for k, p in net.named_parameters()}
    trainable = {f"{n}.{k}" for n, net in nets.items() for k, p in net.named_parameters() if p.requires_grad}
    out = method.training_step(nets, batch, 0)  # type: ignore[attr-defined]
    assert set(out.losses) == set(optimizers), (set(out.losses), set(optimizers))
    for name, opt in optimizers.items():
        opt.zero_grad()
        out.losses[name].backward()
        opt.step()
    after = {f"{n}.{k}": p.detach() for n, net in nets.items() for k, p in net.named_parameters()}
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved, "one optimizer step changed no weight"
    assert moved <= trainable, f"frozen parameters changed: {sorted(moved - trainable)[:5]}"


def check_config(module: ModuleType, path: Path, tmp_path: Path) -> None:
    """Load ``path`` as the method's config, check the paper's values, point it at a fake dataset, build, run one
    training step (finite loss) and one optimizer step (weights move)."""
    cfg = load_config_file(module.CONFIG, path)
    check_paper_values(module.__name__.rsplit(".", 1)[-1], path.stem, cfg)
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
    check_one_step_moves_weights(method, batch)
