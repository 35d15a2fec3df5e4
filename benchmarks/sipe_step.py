"""SIPE training-step cost against the multi-label CAM step, and the cost of the N x N structure affinity.

Usage::

    .venv/bin/python benchmarks/sipe_step.py [--steps 5] [--threads 1] [--json out.json]

1. Train step, same batch, one run: the ShapesWorld setting (``resnet_small``, batch 16, crop 128) and a
   paper-like setting scaled to CPU (``resnet50_os16`` with frozen BN, batch 2, crop 256). SIPE (L_cls + GSC)
   and CAM (L_cls) each run in a fresh subprocess; time is the median step after one warm-up step, peak
   memory is the process's peak RSS during the steps minus its RSS before them (CPU only).
2. Structure-aware seeds (``lowlabel.losses.sipe.structure_seeds``, chunked ``S @ M^T``) at 32x32 (the
   paper's feature size at crop 512) and 64x64 features, B = 16, K1 = 21, C = 2048, against the official
   formulation that materialises B x K1 x N x N (measured only where it fits in memory; its size is printed).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time
from typing import Any


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _train_step_child(kind: str, setting: str, steps: int, threads: int, queue: Any) -> None:
    import torch

    from lowlabel.methods.base import OptimConfig
    from lowlabel.methods.wsss import common, sipe

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if setting == "shapesworld":
        model_cfg = common.ModelConfig(backbone="resnet_small", frozen_bn=False, freeze_stem=False, detach_stage=0,
                                     side_channels=(32, 64, 128, 128))
        batch_size, crop = 16, 128
    else:
        model_cfg = common.ModelConfig(backbone="resnet50_os16", frozen_bn=True, freeze_stem=True, detach_stage=2)
        batch_size, crop = 2, 256
    net = common.build_cam_net(model_cfg, 20, side_features=kind == "sipe")
    opt = common.two_group_optimizer(net, OptimConfig(lr=0.01, momentum=0.9), 10.0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(batch_size, 3, crop, crop, generator=g)
    labels = (torch.rand(batch_size, 20, generator=g) < 0.15).float()
    labels[:, 0] = 1.0
    valid = torch.ones(batch_size, crop, crop)
    params = sipe.SIPEParams()
    before = _rss_mb()
    times, cpu = [], []
    for _ in range(steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        out = net(x)
        loss = torch.nn.functional.multilabel_soft_margin_loss(out.cam.mean(dim=(2, 3)), labels)
        if kind == "sipe":
            v = common.valid_maps(valid, labels, out.x4.shape[2:])
            maps = sipe.sipe_maps(out, v, params, seed_features=out.x4.detach())
            from lowlabel.losses.sipe import gsc_loss

            loss = loss + gsc_loss(maps["norm_cam"], maps["is_cam"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    queue.put({"step_s": statistics.median(cpu[1:]), "wall_s": statistics.median(times[1:]),
               "peak_mb": _peak_mb() - before})


def _affinity_child(side: int, official: bool, threads: int, queue: Any) -> None:
    import torch
    import torch.nn.functional as F

    from lowlabel.losses.sipe import structure_seeds

    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(0)
    b, k1, c = 16, 21, 2048
    cams = torch.rand(b, k1, side, side, generator=g)
    feats = torch.randn(b, c, side, side, generator=g)
    valid = torch.ones(b, k1, 1, 1)
    before = _rss_mb()
    t0 = time.process_time()
    if official:  # the official get_seed: correlation (B,1,N,N) * cam (B,K1,1,N) -> (B,K1,N,N), summed over j
        with torch.no_grad():
            n = side * side
            f = feats.view(b, c, n)
            f = f / (f.norm(dim=1, keepdim=True) + 1e-5)
            corr = F.relu(torch.matmul(f.transpose(2, 1), f)).unsqueeze(1)  # (B, 1, N, N)
            cam = cams.view(b, k1, 1, n)  # (B, K1, 1, N)
            inter = (corr * cam).sum(-1)  # materialises (B, K1, N, N)
            union = corr.sum(-1) + cam.sum(-1) - inter
            _ = (inter / union).argmax(1)
    else:
        structure_seeds(cams, feats, valid)
    queue.put({"seconds": time.process_time() - t0, "peak_mb": _peak_mb() - before})


def _in_child(target: Any, *args: Any) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=str, default="")
    parser.add_argument("--skip-r50", action="store_true", help="only the ShapesWorld setting")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for setting in ("shapesworld",) + (() if args.skip_r50 else ("r50_os16",)):
        cam = _in_child(_train_step_child, "cam", setting, args.steps, args.threads)
        sipe = _in_child(_train_step_child, "sipe", setting, args.steps, args.threads)
        results[setting] = {"cam": cam, "sipe": sipe, "ratio": sipe["step_s"] / cam["step_s"]}
        ratio = results[setting]["ratio"]
        print(f"{setting}: CAM {cam['step_s']:.3f} CPU s/step, peak +{cam['peak_mb']:.0f} MB | SIPE "
              f"{sipe['step_s']:.3f} CPU s/step, peak +{sipe['peak_mb']:.0f} MB | SIPE / CAM = {ratio:.2f}")
    for side in (32, 64):
        ours = _in_child(_affinity_child, side, False, args.threads)
        dense_gb = 16 * 21 * (side * side) ** 2 * 4 / 2**30
        entry: dict[str, Any] = {"chunked": ours, "official_dense_tensor_gb": dense_gb}
        if dense_gb < 4:
            entry["official"] = _in_child(_affinity_child, side, True, args.threads)
        results[f"affinity_{side}x{side}"] = entry
        official = entry.get("official")
        print(f"structure seeds {side}x{side} (B=16, K1=21, C=2048): chunked {ours['seconds']:.2f} CPU s, peak "
              f"+{ours['peak_mb']:.0f} MB | official B*K1*N*N tensor = {dense_gb:.1f} GB" +
              (f", {official['seconds']:.2f} CPU s, peak +{official['peak_mb']:.0f} MB" if official else " (not run)"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
