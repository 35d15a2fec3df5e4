"""ContrastCorr's inter-video contrastive transformation: peak memory and CPU time of forward + backward, chunked
(with per-block recomputation) against the dense (B*N)^2 computation of the official ``Batch_Contrastive``.

Each setting runs in its own child process (peak RSS from ``getrusage``, reported above a baseline process that
made the same inputs); the loss value and the gradients of the two are compared.

    python benchmarks/contrastcorr_memory.py --batch 16 --cells 1024 --channels 256
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(args: argparse.Namespace) -> None:
    import torch

    from lowlabel.losses.contrastcorr import inter_video_transform

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    b, n, c = args.batch, args.cells, args.channels
    tgt = (torch.randn(b, c, n, generator=gen) / c**0.5).requires_grad_(True)
    ref = (torch.randn(b, c, n, generator=gen) / c**0.5).requires_grad_(True)
    values = torch.randn(b, 64, n, generator=gen)
    if args.mode == "baseline":
        print(json.dumps({"mode": "baseline", "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return
    start = time.process_time()
    if args.mode == "dense":  # the official way: the whole (B*N_t) x (B*N_r) matrix
        rows = tgt.permute(0, 2, 1).reshape(b * n, c)
        cols = ref.permute(1, 0, 2).reshape(c, b * n)
        prob = torch.softmax(rows @ cols, dim=1)
        carried = prob @ values.permute(1, 0, 2).reshape(64, b * n).t()
        video = torch.arange(b).repeat_interleave(n)
        inside = (prob * (video[None] == video[:, None])).sum(dim=1)
        loss = carried.square().mean() + (inside - 1).abs().mean()
    else:
        carried, sparsity = inter_video_transform(tgt, ref, values, chunk=args.chunk)
        loss = carried.square().mean() + sparsity
    loss.backward()
    cpu = time.process_time() - start
    print(json.dumps({"mode": args.mode, "loss": float(loss), "cpu": cpu,
                      "grad": float(tgt.grad.double().sum() + ref.grad.double().sum()),
                      "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cells", type=int, default=1024, help="cells per frame (32 x 32 in the paper)")
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--mode", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        child(args)
        return
    rows = {}
    for mode in ("baseline", "dense", "chunked"):
        cmd = [sys.executable, __file__, "--mode", mode] + [
            f"--{k}={getattr(args, k)}" for k in ("batch", "cells", "channels", "chunk")]
        rows[mode] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    base = rows["baseline"]["peak_mib"]
    print(f"B = {args.batch}, N = {args.cells} cells per frame, {args.channels}-d features, forward + backward; "
          f"memory above the {base:.0f} MiB of a process holding the inputs:")
    print("| inter-video transformation | CPU s | peak RSS above baseline, MiB | loss |")
    print("|---|---|---|---|")
    for mode, name in (("dense", "dense (B*N)^2, as the official code"), ("chunked", f"chunked ({args.chunk} rows)")):
        r = rows[mode]
        print(f"| {name} | {r['cpu']:.1f} | {r['peak_mib'] - base:.0f} | {r['loss']:.6f} |")
    d, c = rows["dense"], rows["chunked"]
    print(f"same loss: {abs(d['loss'] - c['loss']) <= 1e-5 * abs(d['loss'])}; "
          f"gradient sums {d['grad']:.6f} / {c['grad']:.6f}")


if __name__ == "__main__":
    main()
