"""Label propagation on a 480p sequence, chunked against dense: CPU time per frame, peak memory, identical masks.

Each setting runs in its own child process (peak RSS from ``getrusage``), propagating a random 3-object first mask
through ``--frames`` frames of seeded random features (the encoder is left out: this measures propagation only). The
reference is the same propagation with one chunk holding every target cell (the dense affinity), in the same run.

    python benchmarks/propagation_memory.py --frames 50 --channels 64
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time


def child(args: argparse.Namespace) -> None:
    import torch

    from lowlabel.models.propagation import PAPER, PropagationConfig, propagate_video

    torch.set_num_threads(1)
    h, w = args.height // args.stride, args.width // args.stride
    gen = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 4, (args.height // 32, args.width // 32), generator=gen)
    mask = mask.repeat_interleave(32, 0).repeat_interleave(32, 1)[: args.height, : args.width]

    def encode(t: torch.Tensor) -> torch.Tensor:
        return torch.randn(args.channels, h, w, generator=torch.Generator().manual_seed(int(t)))

    if args.chunk < 0:  # the baseline: imports, the first mask, one frame's features and one small affinity block
        feats = encode(torch.tensor(0)).flatten(1)  # (BLAS sets up its buffers on the first product, in every mode)
        (feats.t() @ feats[:, :64]).sum()
        print(json.dumps({"chunk": -1, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return
    chunk = args.chunk if args.chunk > 0 else h * w
    cfg = PropagationConfig(**{**PAPER.__dict__, "chunk": chunk})
    digest = hashlib.sha256()
    start = time.process_time()
    frames = (torch.tensor(t) for t in range(args.frames))
    for pred in propagate_video(encode, frames, mask, cfg=cfg, stride=args.stride):
        digest.update(pred.numpy().tobytes())
    cpu = time.process_time() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"chunk": args.chunk, "cells": h * w, "cpu_per_frame": cpu / (args.frames - 1),
                      "peak_mib": peak, "masks": digest.hexdigest()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--stride", type=int, default=8)
    parser.add_argument("--chunks", type=int, nargs="+", default=[1024, 256], help="target cells per block")
    parser.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    for chunk in (-1, 0, *args.chunks):
        cmd = [sys.executable, __file__, "--child", "--chunk", str(chunk)] + [
            f"--{k}={getattr(args, k)}" for k in ("frames", "channels", "height", "width", "stride")]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    base, dense, *chunked = rows
    print(f"{args.frames} frames of {args.height} x {args.width} at stride {args.stride} ({dense['cells']} cells), "
          f"{args.channels}-d features, paper settings (first + 7 frames, top-5, mutual matching); memory above the "
          f"{base['peak_mib']:.0f} MiB of a process that imported torch, made one frame's features and one small "
          f"product:")
    print("| propagation | CPU s per frame | peak RSS above baseline, MiB | masks as dense |")
    print("|---|---|---|---|")
    for name, row in [("dense (one block)", dense)] + [(f"chunked ({r['chunk']} cells)", r) for r in chunked]:
        print(f"| {name} | {row['cpu_per_frame']:.2f} | {row['peak_mib'] - base['peak_mib']:.0f} | "
              f"{'identical' if row['masks'] == dense['masks'] else 'DIFFERENT'} |")


if __name__ == "__main__":
    main()
