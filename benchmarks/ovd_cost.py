"""The cost of the ``ovd`` stage's parts, the arithmetic behind configs/ovd/synth-full.yaml's budget.

One process generates ShapesWorld quick ``coco/`` into a temporary folder, writes a random CLIP of ``--arch`` as a
``clip`` run and a random class-agnostic RPN with the network of configs/detector/coco-rpn-synth-full.yaml as a
``detector`` run (random weights cost what trained ones cost, up to how many boxes survive NMS), builds the method from
``--config`` on them and measures CPU time (user + system of this process) of

* ``build``: loading the CLIP and embedding the class names (80 templates);
* ``step_with_rpn``: training steps whose images have no cached proposals yet (RPN forward included);
* ``step_cached``: training steps whose proposals are cached (the rest of an epoch of synth-full);
* ``eval_per_image``: the evaluation of the val split (proposals, RoI head, scoring) per image.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ovd_cost.py                # configs/ovd/synth-full.yaml

Measured 2026-12-04 on one thread next to a 2-core study (quick coco/, 135 x 154 images, 114 train images with a base
box, batch 16 x 64 RoIs): build 1.6 s; steps 1.6 s with the RPN, 1.0 s cached; evaluation 0.16 s per val image
(33.7 s wall for the whole script, 1.65 GB peak). So synth-full: 800 x 1.0 s + 6,000 images x (1.6 - 1.0) / 16 s of RPN
+ 1,000 x 0.16 s of evaluation = 800 + 225 + 160 s, about 20 CPU-minutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.methods.open_vocab: the clip-run writer


def cpu() -> float:
    times = os.times()
    return times.user + times.system


def write_rpn_run(folder: Path, config: Path, **model: object) -> Path:
    """A ``detector`` run folder holding a random class-agnostic RPN built from ``config`` (``model`` changes its
    model section)."""
    import torch

    from lowlabel.engine.config import config_to_dict, load_config_file
    from lowlabel.methods.cross_domain import detector
    from lowlabel.models.weights import CHECKPOINT_FORMAT

    cfg = load_config_file(detector.CONFIG, config)
    cfg.data = dataclasses.replace(cfg.data, root="", classes=["object"])
    cfg.model = dataclasses.replace(cfg.model, **model)
    rpn = detector.build(cfg)
    (folder / "checkpoints").mkdir(parents=True)
    torch.save({"format": CHECKPOINT_FORMAT, "version": 1, "method": "detector", "config": config_to_dict(rpn.config),
                "nets": {"detector": rpn.model.state_dict()}}, folder / "checkpoints" / "last.ckpt")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "ovd" / "synth-full.yaml"))
    parser.add_argument("--arch", default="tiny")
    parser.add_argument("--epochs", type=int, default=2, help="the first one runs the RPN, the others are cached")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from lowlabel.data.synth import generate
    from lowlabel.engine.config import load_config_file
    from lowlabel.engine.frozen import frozen_networks, merge_nets
    from lowlabel.engine.loop import evaluate_nets
    from lowlabel.methods.open_vocab import ovd
    from tests.methods.open_vocab.test_regionclip import write_clip_run

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="ovd-cost-"))
    generate(tmp / "synth", preset="quick", seed=0, workers=1, kinds=["coco"], overwrite=False, verbose=False)
    write_rpn_run(tmp / "rpn", ROOT / "configs" / "detector" / "coco-rpn-synth-full.yaml")
    cfg = load_config_file(ovd.CONFIG, Path(args.config))
    cfg.data = dataclasses.replace(cfg.data, root=str(tmp / "synth" / "coco"))
    cfg.init_from = str(write_clip_run(tmp / "clip", args.arch, image_size=96))
    cfg.proposals = dataclasses.replace(cfg.proposals, source=str(tmp / "rpn"))
    start = cpu()
    method = ovd.build(cfg)
    build = cpu() - start
    nets = merge_nets(method.networks(), frozen_networks(method))
    opt = method.optimizers(nets)["model"]
    data = method.train_dataset()
    batch_size = cfg.trainer.batch_size
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=True, drop_last=True,
                                         collate_fn=method.collate)
    steps: dict[int, list[float]] = {}
    for epoch in range(args.epochs):
        for batch in loader:
            start = cpu()
            out = next(iter(method.training_step(nets, batch, 0)))
            opt.zero_grad()
            out.losses["model"].backward()
            opt.step()
            steps.setdefault(epoch, []).append(cpu() - start)
    val = method._view(cfg.trainer.eval_split, train=False)
    start = cpu()
    evaluate_nets(method, nets, split=cfg.trainer.eval_split, out_dir=tmp / "eval")
    per_image = (cpu() - start) / len(val)
    result = {"config": args.config, "arch": args.arch, "threads": args.threads, "train_images": len(data),
              "batch_size": batch_size, "rois_per_image": cfg.roi.batch_size_per_image, "build_s": round(build, 2),
              "step_with_rpn_s": round(statistics.median(steps[0]), 2),
              "step_cached_s": round(statistics.median([t for e in steps if e for t in steps[e]]), 2)
              if args.epochs > 1 else None,
              "eval_per_image_s": round(per_image, 3), "val_images": len(val)}
    print(json.dumps(result, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
