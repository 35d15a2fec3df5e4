"""LGCL's training step against CUT's at the same resolution, and translation throughput, with peak memory.

Each step is the real ``training_step`` (D phase, then G phase: GAN + PatchNCE [+ the local-global loss]) with
backward and both Adam steps, then ``after_optimizer_step`` (LGCL's momentum update and enqueue), on one fixed batch
of random images. The methods alternate in one process (a shared machine slows both alike); CPU time, median of the
repeats, as the ratio LGCL / CUT (issue 18's target: <= 2). Translation: ``predict``-style inference (eval mode, no
gradients) in images/s of CPU time. Peak memory: each configuration again in a fresh subprocess that builds the method
and runs three steps: its peak RSS (``VmHWM``), and how far the three steps rise above the RSS of the built method.

    python benchmarks/lgcl_step.py                                       # the ShapesWorld synth-full setting
    python benchmarks/lgcl_step.py --width 64 --blocks 9 --height 256 --width-px 256 --batch 1   # CUT's full size
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path


def build(name: str, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import dataclasses

    from lowlabel.methods.cross_domain import cut, lgcl

    module = lgcl if name == "lgcl" else cut
    cfg = module.CONFIG()
    cfg.model = dataclasses.replace(cfg.model, width=args.width, n_blocks=args.blocks, disc_width=args.width)
    if name == "lgcl":
        cfg.lg = dataclasses.replace(cfg.lg, queue_size=args.queue)
    method = module.build(cfg)
    nets = method.networks()
    return method, nets, method.optimizers(nets)


def one_step(method, nets, opts, batch, step: int) -> None:  # type: ignore[no-untyped-def]
    for out in method.training_step(nets, batch, step):
        for name, loss in out.losses.items():
            loss.backward()
            opts[name].step()
            opts[name].zero_grad(set_to_none=True)
    method.after_optimizer_step(nets, step)


def batch_of(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import torch

    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, 3, args.height, args.width_px)
    return {"x": torch.rand(shape, generator=gen) * 2 - 1, "y": torch.rand(shape, generator=gen) * 2 - 1}


def peak_memory(name: str, argv: list[str]) -> tuple[float, float]:
    """(MiB of peak RSS, MiB of it above the built method) of a fresh process that builds ``name`` and runs three
    steps."""
    out = subprocess.run([sys.executable, __file__, *argv, "--memory-of", name], capture_output=True, text=True,
                         check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    return float(found["total_mib"]), float(found["peak_mib"])


def status_mib(field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of this process in MiB, from /proc/self/status. Unlike getrusage's maxrss,
    which survives the exec that starts this child (it would report the parent's peak), these belong to this
    process image."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def memory_child(name: str, args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    method, nets, opts = build(name, args)
    built_peak, built_now = status_mib("VmHWM"), status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    batch = batch_of(args)
    for step in range(3):
        one_step(method, nets, opts, batch, step)
    steps_peak = status_mib("VmHWM")
    print(json.dumps({"peak_mib": steps_peak - built_now, "total_mib": max(built_peak, steps_peak)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=16, help="translator width w (ngf)")
    parser.add_argument("--blocks", type=int, default=4, help="residual blocks of E_B")
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width-px", type=int, default=160)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--queue", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-of", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_of:
        memory_child(args.memory_of, args)
        return

    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    runs = {name: build(name, args) for name in ("cut", "lgcl")}
    batch = batch_of(args)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.repeats + 1):
        for name, (method, nets, opts) in runs.items():
            torch.manual_seed(repeat)
            start = time.process_time()
            one_step(method, nets, opts, batch, repeat)
            if repeat:  # the first round warms up
                times[name].append(time.process_time() - start)
    speed = {}
    for name, (method, nets, _) in runs.items():
        images = [((batch["x"][i] + 1) * 127.5).to(torch.uint8) for i in range(args.batch)]
        for net in nets.values():
            net.eval()
        with torch.no_grad():
            method.predict_batch(nets, images)  # warm-up
            start = time.process_time()
            for _ in range(args.repeats):
                method.predict_batch(nets, images)
        speed[name] = args.repeats * args.batch / (time.process_time() - start)
    argv = [a for a in sys.argv[1:]]
    memory = {name: peak_memory(name, argv) for name in runs}
    cut_step = statistics.median(times["cut"])
    print(f"translator width {args.width}, {args.blocks} blocks, batch {args.batch} x {args.height} x "
          f"{args.width_px} px, LGCL queue {args.queue}; median CPU time of {args.repeats} steps, one thread:")
    print("| method | train step (CPU s) | ratio to CUT | translation (images / CPU s) | peak RSS (MiB) | of it above "
          "the built method |")
    print("|---|---|---|---|---|---|")
    for name in runs:
        step = statistics.median(times[name])
        total, above = memory[name]
        print(f"| {name} | {step:.3f} | {step / cut_step:.2f} | {speed[name]:.1f} | {total:.0f} | {above:.0f} |")


if __name__ == "__main__":
    main()
