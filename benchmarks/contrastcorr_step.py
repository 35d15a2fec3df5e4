"""ContrastCorr's training step against its intra-only ablation (and the intra-video warm-up step), same encoder and
batch: CPU time per step, measured in one process that alternates the three (a shared, loaded machine slows all
alike), as ratios to the intra-only second-stage step.

Each step is the real ``training_step`` + backward + an Adam step on one fixed batch of random LAB frame pairs, with a
random colour autoencoder (its weights do not change the cost).

    python benchmarks/contrastcorr_step.py                                   # ShapesWorld synth-full setting
    python benchmarks/contrastcorr_step.py --encoder resnet18_os8 --crop 256 --full 640 --batch 16  # the paper's
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="resnet_small")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--crop", type=int, default=64)
    parser.add_argument("--full", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--channels", type=int, default=64, help="colour autoencoder width")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    from lowlabel.methods.base import OptimConfig
    from lowlabel.methods.correspondence import contrastcorr as cc
    from lowlabel.models.correspondence_nets import ColourAutoencoder
    from lowlabel.models.weights import CHECKPOINT_FORMAT

    torch.set_num_threads(1)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ae = Path(tmp) / "ae"
        (ae / "checkpoints").mkdir(parents=True)
        torch.save({"format": CHECKPOINT_FORMAT, "method": "contrastcorr_ae", "config": {},
                    "nets": {"model": ColourAutoencoder(channels=args.channels).state_dict()}},
                   ae / "checkpoints" / "last.ckpt")
        methods = {}
        for name, inter in (("contrastcorr", True), ("intra-only", False)):
            cfg = cc.ContrastCorrConfig(
                data=cc.CCDataConfig(root=tmp, crop=args.crop, full=args.full),
                model=cc.CCModelConfig(encoder=args.encoder, width=args.width),
                contrastcorr=cc.CCParams(warmup_steps=1, use_inter=inter, conc_start=0,
                                         conc_window=min(8, args.crop // 8)),
                init_from=str(ae), optim=OptimConfig(name="adam", lr=1e-4, weight_decay=0.0))
            torch.manual_seed(0)
            m = cc.build(cfg)
            nets = {**m.networks(), "colour": m.frozen_networks()["colour"].module}
            methods[name] = (m, nets, m.optimizers(nets)["encoder"])
    batch = torch.rand(args.batch, 2, 3, args.full, args.full) * 2 - 1
    steps = {"warm-up (intra-video stage)": ("intra-only", 0), "intra-only, second stage": ("intra-only", 5),
             "contrastcorr, second stage": ("contrastcorr", 5)}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for repeat in range(args.repeats + 1):
        for label, (name, step) in steps.items():
            method, nets, opt = methods[name]
            torch.manual_seed(repeat)
            start = time.process_time()
            out = method.training_step(nets, batch, step)
            opt.zero_grad()
            out.losses["encoder"].backward()
            opt.step()
            if repeat:  # the first round warms up
                times[label].append(time.process_time() - start)
    ref = statistics.median(times["intra-only, second stage"])
    print(f"{args.encoder} (width {args.width}), batch {args.batch}, patch {args.crop}, full {args.full}, "
          f"median of {args.repeats}:")
    print("| step | CPU s | ratio to intra-only |")
    print("|---|---|---|")
    for label, values in times.items():
        print(f"| {label} | {statistics.median(values):.2f} | {statistics.median(values) / ref:.2f} |")


if __name__ == "__main__":
    main()
