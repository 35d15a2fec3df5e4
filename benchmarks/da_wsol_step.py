"""DA-WSOL train step time / CAM train step time, same backbone and batch, with peak memory.

Both methods run the real ``training_step`` plus backward and an SGD step on one fixed synthetic
batch. The step times come from one process that alternates CAM and DA-WSOL steps (a shared, loaded
machine then slows both alike); peak RSS comes from one process per method. DA-WSOL's extra work is
also timed directly: the Target Sample Assigner (k-means + memory), sampling and the MMD.

    .venv/bin/python benchmarks/da_wsol_step.py                       # ShapesWorld configs' setting
    .venv/bin/python benchmarks/da_wsol_step.py --backbone resnet50 --size 224 --batch-size 8

Results are recorded in benchmarks/README.md (section "DA-WSOL step").
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _build(name: str, args: argparse.Namespace) -> tuple[Any, Any, dict[str, list[float]]]:
    import torch

    from lowlabel.methods.wsol import cam, da_wsol
    from lowlabel.methods.wsol.common import build_cam_net

    torch.manual_seed(0)
    cfg = da_wsol.DAWSOLConfig() if name == "da_wsol" else cam.CAMConfig()
    cfg.model.backbone, cfg.model.width, cfg.model.large_feature_map = args.backbone, args.width, True
    model = build_cam_net(cfg.model, args.num_classes)
    parts = {"config": cfg, "data": None, "model": model, "num_classes": args.num_classes}
    if name == "cam":
        return cam.CAMMethod(**parts), torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9), {}
    cfg.da.num_source = cfg.da.num_target = args.num_samples
    tsa = da_wsol.TargetSampleAssigner(num_classes=args.num_classes, dim=model.backbone.num_features,
                                       num_source=args.num_samples, num_target=args.num_samples)
    method = da_wsol.DAWSOL(tsa=tsa, **parts)
    return method, torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9), _instrument(method)


def worker(args: argparse.Namespace) -> dict[str, Any]:
    """Time the methods named by ``args.worker`` (``both``: alternating steps, so load hits both alike)."""
    import torch

    torch.set_num_threads(args.threads)
    names = ["cam", "da_wsol"] if args.worker == "both" else [args.worker]
    built = {n: _build(n, args) for n in names}
    gen = torch.Generator().manual_seed(1)
    # a batch with a bright square per image, so the pixel clusters are not pure noise
    images = torch.randn(args.batch_size, 3, args.size, args.size, generator=gen) * 0.2
    for i in range(args.batch_size):
        a = int(torch.randint(0, args.size // 2, (1,), generator=gen))
        images[i, :, a:a + args.size // 3, a:a + args.size // 3] += 2.0
    batch = {"image": images, "label": torch.randint(0, args.num_classes, (args.batch_size,), generator=gen)}
    times: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for i in range(args.warmup + args.steps):
        for name, (method, opt, timers) in built.items():
            if i == args.warmup:
                for v in timers.values():
                    v.clear()
            t0, c0 = time.perf_counter(), time.process_time()
            out = method.training_step(method.networks(), batch, 10**6)
            out.losses["model"].backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return {"step_s": {n: statistics.median(t[args.warmup:]) for n, t in times.items()},
            "cpu_s": {n: statistics.median(t[args.warmup:]) for n, t in cpu.items()},
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "parts_s": {k: statistics.median(v) for _, _, tm in built.values() for k, v in tm.items() if v}}


def _instrument(method: Any) -> dict[str, list[float]]:
    """Wrap the assigner's ``assign``/``sample`` and the MMD to time them."""
    from lowlabel.methods.wsol import da_wsol

    timers: dict[str, list[float]] = {"tsa_assign": [], "tsa_sample": [], "mmd": []}

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            result = fn(*a, **k)
            timers[name].append(time.perf_counter() - t0)
            return result
        return wrapper

    method.tsa.assign = timed("tsa_assign", method.tsa.assign)
    method.tsa.sample = timed("tsa_sample", method.tsa.sample)
    da_wsol.mmd_linear = timed("mmd", da_wsol.mmd_linear)
    return timers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet_small")
    parser.add_argument("--width", type=int, default=16, help="resnet_small width (synth configs: 16)")
    parser.add_argument("--size", type=int, default=96, help="input side (synth configs: crop 96)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--num-samples", type=int, default=16, help="TSA n_s = n_t (synth configs: 16)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", choices=["cam", "da_wsol", "both"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    runs = {}
    for name in ("cam", "da_wsol", "both"):  # separate processes: peak RSS per method; "both" for the ratio
        cmd = [sys.executable, __file__, "--worker", name] + sys.argv[1:]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        runs[name] = json.loads(done.stdout.strip().splitlines()[-1])
    steps, cpu = runs["both"]["step_s"], runs["both"]["cpu_s"]
    parts = runs["both"]["parts_s"]
    print(f"setting: {args.backbone}" + (f" (width {args.width})" if args.backbone == "resnet_small" else "")
          + f", batch {args.batch_size} x {args.size}px, n_s = n_t = {args.num_samples}, {args.threads} thread(s), "
          f"median of {args.steps} alternating steps")
    for name in ("cam", "da_wsol"):
        print(f"  {name:8s} step: wall {steps[name] * 1000:8.1f} ms, CPU {cpu[name] * 1000:8.1f} ms; "
              f"peak RSS {runs[name]['peak_rss_mb']:7.0f} MB")
    print("  DA-WSOL extra parts: " + ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in parts.items())
          + f" = {sum(parts.values()) / steps['cam'] * 100:.1f}% of a CAM step")
    ratio_cpu, ratio_wall = cpu["da_wsol"] / cpu["cam"], steps["da_wsol"] / steps["cam"]
    print(f"  ratio da_wsol / cam: CPU time {ratio_cpu:.3f}, wall {ratio_wall:.3f}"
          " (target <= 1.3; CPU time is the meaningful one on a shared machine)")


if __name__ == "__main__":
    main()
