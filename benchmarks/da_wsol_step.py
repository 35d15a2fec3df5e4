"""DA-WSOL train step time / CAM train step time, same backbone and batch, with peak memory.

Each method runs in its own subprocess (so peak RSS is per method) on a fixed random batch, through
the methods' real ``training_step`` plus backward and an SGD step. DA-WSOL's step is also broken
down into the Target Sample Assigner (k-means + memory), sampling and MMD.

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


def worker(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    sys.path.insert(0, str(ROOT))
    from lowlabel.methods import cam, da_wsol
    from lowlabel.methods.wsol_common import build_cam_net

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = da_wsol.DAWSOLConfig() if args.worker == "da_wsol" else cam.CAMConfig()
    cfg.model.backbone, cfg.model.width, cfg.model.large_feature_map = args.backbone, args.width, True
    model = build_cam_net(cfg.model, args.num_classes)
    parts = {"config": cfg, "data": None, "model": model, "num_classes": args.num_classes}
    if args.worker == "da_wsol":
        tsa = da_wsol.TargetSampleAssigner(num_classes=args.num_classes, dim=model.backbone.num_features,
                                           num_source=args.num_samples, num_target=args.num_samples)
        cfg.da.num_source = cfg.da.num_target = args.num_samples
        method: Any = da_wsol.DAWSOL(tsa=tsa, **parts)
        timers = _instrument(method)
    else:
        method, timers = cam.CAMMethod(**parts), {}
    nets = method.networks()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    batch = {"image": torch.randn(args.batch_size, 3, args.size, args.size),
             "label": torch.randint(0, args.num_classes, (args.batch_size,))}
    times = []
    for i in range(args.warmup + args.steps):
        if i == args.warmup:
            for v in timers.values():
                v.clear()
        t0 = time.perf_counter()
        out = method.training_step(nets, batch, 10**6)
        out.losses["model"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    steps = times[args.warmup:]
    return {"method": args.worker, "step_s": statistics.median(steps), "steps": steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "parts_s": {k: statistics.median(v) for k, v in timers.items() if v}}


def _instrument(method: Any) -> dict[str, list[float]]:
    """Wrap the assigner's ``assign``/``sample`` and the MMD to time them."""
    from lowlabel.methods import da_wsol

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
    parser.add_argument("--worker", choices=["cam", "da_wsol"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    results = {}
    for name in ("cam", "da_wsol"):
        cmd = [sys.executable, __file__, "--worker", name] + sys.argv[1:]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    cam_s, da_s = results["cam"]["step_s"], results["da_wsol"]["step_s"]
    print(f"setting: {args.backbone} (width {args.width}), batch {args.batch_size} x {args.size}px, "
          f"n_s = n_t = {args.num_samples}, {args.threads} thread(s), median of {args.steps} steps")
    for name in ("cam", "da_wsol"):
        r = results[name]
        parts = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in r["parts_s"].items())
        print(f"  {name:8s} step {r['step_s'] * 1000:8.1f} ms  peak RSS {r['peak_rss_mb']:7.0f} MB  {parts}")
    print(f"  ratio da_wsol / cam = {da_s / cam_s:.3f} (target <= 1.3)")


if __name__ == "__main__":
    main()
