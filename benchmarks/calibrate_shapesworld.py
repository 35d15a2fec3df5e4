"""Calibrate ShapesWorld against real-data plain-CAM numbers (issue 4).

Trains a small CNN with a 1x1-conv CAM head (plain torch, CPU) on ShapesWorld ``wsol/`` (single label, CE)
or ``voc/`` (multi-label, BCE) and reports:

* wsol: MaxBoxAccV2 (``lowlabel.metrics.wsol.BoxEvaluator``, GT-known CAM) on ``test``, top-1 cls, and the
  partial-activation diagnosis: share of CAM mass on background / object / marking, and
  ``marking_ratio = (CAM mass on marking / CAM mass on object) / (marking area / object area)``;
* voc: seed mIoU on ``train`` (CAMs of the GT classes, best background threshold), and the marking ratio.

Usage::

    python benchmarks/calibrate_shapesworld.py --data /tmp/sw_full --task wsol --epochs 12
    python benchmarks/calibrate_shapesworld.py --data /tmp/sw_full --task voc --epochs 12
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from lowlabel.data.voc import VOCSegmentation
from lowlabel.data.wsol import shapesworld_wsol


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCAMNet(nn.Module):
    """Stride-8 CNN; logits = GAP of a 1x1-conv class map (so the CAM is exactly the class map)."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = (24, 48, 96, 160)) -> None:
        super().__init__()
        a, b, c, d = widths
        self.features = nn.Sequential(
            conv_bn(3, a, 2),
            conv_bn(a, b, 2),
            conv_bn(b, b),
            conv_bn(b, c, 2),
            conv_bn(c, c),
            conv_bn(c, d),
            conv_bn(d, d),
        )
        self.head = nn.Conv2d(d, num_classes, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cams = self.head(self.features(x))  # (B, K, h, w)
        return cams.mean(dim=(2, 3)), cams


MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load_resized(paths: list[Path], size: int) -> torch.Tensor:
    arr = np.stack([np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in paths])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S) uint8


def prep(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255.0 - MEAN) / STD


def augment(x: torch.Tensor, size: int) -> torch.Tensor:
    """Random flip + random resized crop (scale 0.6-1) of a uint8 batch, back to ``size``."""
    flip = torch.rand(x.shape[0]) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    s = int(size * float(np.random.uniform(0.75, 1.0)))
    i, j = np.random.randint(0, size - s + 1, size=2)
    crop = x[:, :, i : i + s, j : j + s].float()
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)


def train(
    net: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    *,
    multilabel: bool,
    epochs: int,
    size: int,
    batch: int = 64,
    lr: float = 0.05,
) -> None:
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4, nesterov=True)
    steps = epochs * ((len(images) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    net.train()
    for ep in range(epochs):
        perm, tot, t0 = torch.randperm(len(images)), 0.0, time.time()
        for k in range(0, len(images), batch):
            idx = perm[k : k + batch]
            x = (augment(images[idx], size) / 255.0 - MEAN) / STD
            logits, _ = net(x)
            y = targets[idx]
            loss = F.binary_cross_entropy_with_logits(logits, y) if multilabel else F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        print(f"epoch {ep}: loss {tot / len(images):.4f} ({time.time() - t0:.0f} s)", flush=True)


@torch.no_grad()
def cams_for(net: nn.Module, x: torch.Tensor, out_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (K,) and ReLU'd CAMs (K, H, W) upsampled to ``out_hw`` for one uint8 image (3, S, S)."""
    logits, cams = net(prep(x[None]))
    cams = F.interpolate(F.relu(cams), size=out_hw, mode="bilinear", align_corners=False)[0]
    return logits[0], cams


def mass_shares(cam: np.ndarray, obj: np.ndarray, mark: np.ndarray) -> tuple[float, float, float]:
    """(object mass share, marking mass share, marking area share of the object) of a min-max CAM."""
    c = cam - cam.min()
    c = c / max(c.max(), 1e-12)
    tot = c.sum() + 1e-12
    return float(c[obj].sum() / tot), float(c[mark].sum() / tot), float(mark.sum() / max(obj.sum(), 1))


def run_wsol(root: Path, epochs: int, size: int, limit: int | None) -> dict:
    from lowlabel.metrics.wsol import BoxEvaluator, normalize_scoremap

    tr = shapesworld_wsol(root, "train")
    ids = tr.image_ids[:limit] if limit else tr.image_ids
    images = load_resized([tr.data_root / x for x in ids], size)
    labels = torch.tensor([tr.labels[x] for x in ids])
    net = SmallCAMNet(tr.num_classes)
    t0 = time.time()
    train(net, images, labels, multilabel=False, epochs=epochs, size=size)
    net.eval()
    te = shapesworld_wsol(root, "test")
    tm = shapesworld_wsol(root, "test", masks=True)
    ev = BoxEvaluator(cam_curve_interval=0.01, iou_thresholds=(30, 50, 70))
    test_imgs = load_resized([te.data_root / x for x in te.image_ids], size)
    shares, correct = [], 0
    for k, image_id in enumerate(te.image_ids):
        label = te.labels[image_id]
        h, w = te.sizes[image_id]
        logits, cams = cams_for(net, test_imgs[k], (224, 224))
        pred = int(logits.argmax())
        correct += pred == label
        ev.update(normalize_scoremap(cams[label].numpy()), np.asarray(te.boxes[image_id]), (w, h), pred, label)
        obj, _ = tm.load_masks(image_id)
        mark = np.asarray(Image.open(root / "diagnostics" / image_id.replace(".jpg", "_marking.png"))) > 0
        cam_hw = F.interpolate(cams[label][None, None], size=(h, w), mode="bilinear")[0, 0].numpy()
        if mark.any():
            shares.append(mass_shares(cam_hw, obj, mark))
    res = ev.compute()
    s = np.asarray(shares)
    obj_m, mark_m, area = s[:, 0].mean(), s[:, 1].mean(), s[:, 2].mean()
    return {
        "task": "wsol",
        "train_images": len(ids),
        "epochs": epochs,
        "input": size,
        "train_s": time.time() - t0,
        "MaxBoxAccV2": res["MaxBoxAccV2"],
        "MaxBoxAccV2@30": res["MaxBoxAccV2@30"],
        "MaxBoxAccV2@50": res["MaxBoxAccV2@50"],
        "MaxBoxAccV2@70": res["MaxBoxAccV2@70"],
        "GT-known Loc": res["GT-known Loc"],
        "Top-1 Cls": 100.0 * correct / len(te.image_ids),
        "cam_mass_background": 1 - obj_m,
        "cam_mass_object": obj_m,
        "cam_mass_marking": mark_m,
        "marking_area_share": area,
        "marking_ratio": (mark_m / obj_m) / area,
    }


def run_voc(root: Path, epochs: int, size: int, limit: int | None) -> dict:
    tr = VOCSegmentation(root=root, split="train_aug")
    ids = tr.image_ids[:limit] if limit else tr.image_ids
    images = load_resized([root / "JPEGImages" / f"{x}.jpg" for x in ids], size)
    labels = torch.stack([tr[i]["labels"] for i in range(len(ids))])
    net = SmallCAMNet(tr.num_classes)
    t0 = time.time()
    train(net, images, labels, multilabel=True, epochs=epochs, size=size)
    net.eval()
    ev = VOCSegmentation(root=root, split="train")
    thresholds = np.round(np.arange(0.05, 0.96, 0.05), 2)
    k1 = ev.num_classes + 1
    conf = np.zeros((len(thresholds), k1, k1), np.int64)
    ratios = []
    imgs = load_resized([root / "JPEGImages" / f"{x}.jpg" for x in ev.image_ids], size)
    for k, image_id in enumerate(ev.image_ids):
        item = ev[k]
        gt = item["mask"].numpy()
        present = np.flatnonzero(item["labels"].numpy())
        _, cams = cams_for(net, imgs[k], gt.shape)
        c = cams[present].numpy()
        c = c / np.maximum(c.reshape(len(present), -1).max(1), 1e-5)[:, None, None]
        valid = gt != 255
        for ti, t in enumerate(thresholds):
            full = np.concatenate([np.full((1, *gt.shape), t), c])
            pred = np.r_[0, present + 1][full.argmax(0)]
            conf[ti] += np.bincount(gt[valid] * k1 + pred[valid], minlength=k1 * k1).reshape(k1, k1)
        mark = np.asarray(Image.open(root / "diagnostics" / f"{image_id}_marking.png")) > 0
        obj = (gt > 0) & valid
        if mark.any():
            camsum = c.max(0)
            ratios.append(mass_shares(camsum, obj, mark))
    ious = []
    for ti in range(len(thresholds)):
        m = conf[ti]
        inter, union = np.diag(m), m.sum(0) + m.sum(1) - np.diag(m)
        ious.append(np.nanmean(np.where(union > 0, inter / np.maximum(union, 1), np.nan)))
    best = int(np.nanargmax(ious))
    s = np.asarray(ratios)
    obj_m, mark_m, area = s[:, 0].mean(), s[:, 1].mean(), s[:, 2].mean()
    return {
        "task": "voc",
        "train_images": len(ids),
        "epochs": epochs,
        "input": size,
        "train_s": time.time() - t0,
        "seed_mIoU": 100 * float(ious[best]),
        "best_bg_threshold": float(thresholds[best]),
        "cam_mass_object": obj_m,
        "cam_mass_marking": mark_m,
        "marking_area_share": area,
        "marking_ratio": (mark_m / obj_m) / area,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="ShapesWorld output folder (holds wsol/ and voc/)")
    p.add_argument("--task", choices=["wsol", "voc"], default="wsol")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--size", type=int, default=96, help="square input side")
    p.add_argument("--limit", type=int, default=None, help="use only the first N training images")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    fn = run_wsol if a.task == "wsol" else run_voc
    res = fn(a.data / a.task, a.epochs, a.size, a.limit)
    print(json.dumps(res, indent=1))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
