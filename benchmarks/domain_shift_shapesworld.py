"""Domain-shift evidence for ShapesWorld ``domains/`` (issue 4): a detector trained on the clear source domain
loses a large part of its mAP on the foggy target domain.

The detector is a tiny CenterNet-style network (stride-4 class heatmaps + box sizes, plain torch, CPU), trained on
``trainA`` only and scored with ``lowlabel.metrics.voc_ap.VOCAPEvaluator`` (mAP@0.5, all-point) on ``testA``
(source), ``testB`` (target) and ``testB_clean`` (the fog-free twins of testB, same boxes).

    python benchmarks/domain_shift_shapesworld.py --data /tmp/sw_full --epochs 12
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lowlabel.data.unpaired import DetectionFolder
from lowlabel.metrics.voc_ap import VOCAPEvaluator

STRIDE = 4


def conv(cin: int, cout: int, stride: int = 1, dil: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, dil, dilation=dil, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class TinyCenterNet(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv(3, 24, 2), conv(24, 48, 2), conv(48, 64), conv(64, 64, dil=2), conv(64, 64, dil=4)
        )
        self.heat = nn.Conv2d(64, num_classes, 1)
        self.size = nn.Conv2d(64, 2, 1)
        nn.init.constant_(self.heat.bias, -2.19)  # prior 0.1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return self.heat(f), self.size(f)


def load(ds: DetectionFolder) -> tuple[torch.Tensor, list[np.ndarray], list[np.ndarray]]:
    imgs, boxes, labels = [], [], []
    for i in range(len(ds)):
        it = ds[i]
        imgs.append(it["image"])
        boxes.append(it["boxes"].numpy().astype(np.float32))  # exclusive xyxy
        labels.append(it["labels"].numpy())
    return torch.stack(imgs), boxes, labels


def targets(boxes: list[np.ndarray], labels: list[np.ndarray], k: int, hw: tuple[int, int]) -> tuple:
    h, w = hw[0] // STRIDE, hw[1] // STRIDE
    heat = np.zeros((len(boxes), k, h, w), np.float32)
    size = np.zeros((len(boxes), 2, h, w), np.float32)
    mask = np.zeros((len(boxes), h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    for n, (bs, ls) in enumerate(zip(boxes, labels)):
        for (x0, y0, x1, y1), c in zip(bs, ls):
            cx, cy = (x0 + x1) / 2 / STRIDE, (y0 + y1) / 2 / STRIDE
            bw, bh = (x1 - x0) / STRIDE, (y1 - y0) / STRIDE
            sigma = max(0.5, min(bw, bh) / 6)
            g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
            heat[n, c] = np.maximum(heat[n, c], g)
            ix, iy = min(int(cx), w - 1), min(int(cy), h - 1)
            size[n, :, iy, ix] = np.log([max(x1 - x0, 1), max(y1 - y0, 1)])
            mask[n, iy, ix] = 1
            heat[n, c, iy, ix] = 1.0
    return torch.from_numpy(heat), torch.from_numpy(size), torch.from_numpy(mask)


def focal(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """CornerNet's penalty-reduced focal loss on logits."""
    p = pred.sigmoid().clamp(1e-4, 1 - 1e-4)
    pos = gt.eq(1).float()
    pos_loss = -((1 - p) ** 2) * torch.log(p) * pos
    neg_loss = -((1 - gt) ** 4) * p**2 * torch.log(1 - p) * (1 - pos)
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1)


def prep(x: torch.Tensor) -> torch.Tensor:
    return x.float() / 255.0 - 0.5


def train(net: nn.Module, imgs: torch.Tensor, tg: tuple, epochs: int, batch: int = 32) -> None:
    heat, size, mask = tg
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * ((len(imgs) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    net.train()
    for ep in range(epochs):
        perm, tot, t0 = torch.randperm(len(imgs)), 0.0, time.time()
        for k in range(0, len(imgs), batch):
            idx = perm[k : k + batch]
            x, h, s, m = prep(imgs[idx]), heat[idx], size[idx], mask[idx]
            if torch.rand(()) < 0.5:  # horizontal flip of images and targets (sizes are flip-invariant)
                x, h, s, m = x.flip(3), h.flip(3), s.flip(3), m.flip(2)
            ph, ps = net(x)
            loss = focal(ph, h) + 0.5 * (F.l1_loss(ps, s, reduction="none").sum(1) * m).sum() / m.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
        print(f"epoch {ep}: loss {tot / len(imgs):.3f} ({time.time() - t0:.0f} s)", flush=True)


@torch.no_grad()
def evaluate(net: nn.Module, ds: DetectionFolder, top_k: int = 30) -> float:
    net.eval()
    ev = VOCAPEvaluator(class_names=ds.class_names, iou_thresh=0.5, use_07_metric=False)
    imgs, boxes, labels = load(ds)
    for n in range(len(imgs)):
        ph, ps = net(prep(imgs[n : n + 1]))
        heat = ph.sigmoid()[0]
        peaks = heat * (F.max_pool2d(heat[None], 3, 1, 1)[0] == heat)
        k, h, w = peaks.shape
        scores, idx = peaks.reshape(-1).topk(min(top_k, peaks.numel()))
        cls, rem = idx // (h * w), idx % (h * w)
        cy, cx = (rem // w).float(), (rem % w).float()
        bw, bh = ps[0, 0, cy.long(), cx.long()].exp().clamp(min=1), ps[0, 1, cy.long(), cx.long()].exp().clamp(min=1)
        px, py = (cx + 0.5) * STRIDE, (cy + 0.5) * STRIDE
        pred = torch.stack([px - bw / 2, py - bh / 2, px + bw / 2 - 1, py + bh / 2 - 1], 1)  # inclusive corners
        pred = torch.maximum(pred, torch.zeros(()))
        gt = boxes[n] - np.asarray([0, 0, 1, 1], np.float32)  # exclusive -> inclusive for +1 IoU
        ev.update(str(n), pred.numpy(), scores.numpy(), cls.numpy(), gt, labels[n])
    return ev.compute()["mAP"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="ShapesWorld output folder (holds domains/)")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument(
        "--also",
        type=Path,
        nargs="*",
        default=[],
        help="more ShapesWorld folders whose domains/testB and testB_clean are scored with the same detector "
        "(target-domain variants generated with other DomainsConfig settings)",
    )
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    root = a.data / "domains"
    tr = DetectionFolder(image_dir=root / "trainA", annotations=root / "annotations" / "trainA.json")
    imgs, boxes, labels = load(tr)
    if a.limit:
        imgs, boxes, labels = imgs[: a.limit], boxes[: a.limit], labels[: a.limit]
    net = TinyCenterNet(len(tr.class_names))
    t0 = time.time()
    train(net, imgs, targets(boxes, labels, len(tr.class_names), tuple(imgs.shape[2:])), a.epochs)
    ann = root / "annotations"
    res = {"train_images": len(imgs), "epochs": a.epochs, "train_s": time.time() - t0}
    for key, folder, ann_name in (
        ("mAP50_source_testA", "testA", "testA"),
        ("mAP50_target_testB", "testB", "testB"),
        ("mAP50_testB_clean_twins", "testB_clean", "testB"),
    ):
        ds = DetectionFolder(image_dir=root / folder, annotations=ann / f"{ann_name}.json")
        res[key] = evaluate(net, ds)
    res["relative_drop_target_vs_clean_twins"] = 1 - res["mAP50_target_testB"] / max(
        res["mAP50_testB_clean_twins"], 1e-9
    )
    for other in a.also:
        ann = other / "domains" / "annotations"
        for folder in ("testB", "testB_clean"):  # the fog-free twins share testB's boxes
            ds = DetectionFolder(image_dir=other / "domains" / folder, annotations=ann / "testB.json")
            res[f"{other.name}/mAP50_{folder}"] = evaluate(net, ds)
    print(json.dumps(res, indent=1))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
