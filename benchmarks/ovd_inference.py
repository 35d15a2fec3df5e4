"""Open-vocabulary detection inference (the ``ovd`` stage's ``predict_batch``) against a plain torchvision Faster R-CNN,
in images per second of CPU time, one process, the two alternating image by image (a shared machine slows both alike).

Ours is what ``lowlabel predict ovd`` runs with configs/ovd/coco-ovd.yaml: the frozen class-agnostic RPN of
configs/detector/coco-rpn.yaml (R50-C4, shorter side 800, 1,000 proposals after NMS), then the CLIP image tower's C4
head on those proposals (RoIAlign on res4, res5 and the attention pool per RoI) and the cosine classifier over the
classes' text embeddings (ShapesWorld coco/'s 20 here; COCO-OVD's 65 add a negligible matrix product). RegionCLIP's
official inference runs the same two networks (its RPN and the CLIP RN50). The reference is torchvision's
``fasterrcnn_resnet50_fpn`` (one R50-FPN, 1,000 proposals, the same shorter side): what a closed-set detector of the
same backbone family costs. Both have random weights (no downloads; the cost does not depend on them, up to how many
boxes survive the score threshold, reported).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/ovd_inference.py                  # RN50 at 800 px, COCO-OVD classes
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ovd_inference.py --arch tiny --size 160 --rpn-config \
        configs/detector/coco-rpn-synth-full.yaml --ovd-config configs/ovd/synth-full.yaml --images 2   # a smoke run
        (the reference stays an R50-FPN, so only the RN50 setting is a like-for-like ratio)

Peak memory: the process's maximum resident set (``resource.getrusage``) at the end, both detectors included.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # benchmarks.ovd_cost and tests.methods.open_vocab: the run writers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="RN50", help="the CLIP image tower (tiny: the ShapesWorld teacher's)")
    parser.add_argument("--size", type=int, default=800, help="the shorter image side (and the letterbox side)")
    parser.add_argument("--rpn-config", default=str(ROOT / "configs" / "detector" / "coco-rpn.yaml"))
    parser.add_argument("--ovd-config", default=str(ROOT / "configs" / "ovd" / "coco-ovd.yaml"))
    parser.add_argument("--images", type=int, default=6, help="timed images per detector (after one warm-up)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    args = parser.parse_args()

    import torch
    import torchvision

    from benchmarks.ovd_cost import cpu, write_rpn_run
    from lowlabel.data.synth import generate
    from lowlabel.engine.config import load_config_file
    from lowlabel.engine.frozen import frozen_networks, merge_nets
    from lowlabel.methods.open_vocab import ovd
    from tests.methods.open_vocab.test_regionclip import write_clip_run

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="ovd-infer-"))
    try:
        generate(tmp / "synth", preset="quick", seed=0, workers=1, kinds=["coco"], overwrite=False, verbose=False)
        write_rpn_run(tmp / "rpn", Path(args.rpn_config), pretrained="", min_size=args.size,
                      max_size=max(1333, args.size))
        cfg = load_config_file(ovd.CONFIG, Path(args.ovd_config))
        synth = load_config_file(ovd.CONFIG, ROOT / "configs" / "ovd" / "synth-full.yaml").data  # the files' layout
        cfg.data = dataclasses.replace(synth, root=str(tmp / "synth" / "coco"), image_size=args.size)
        cfg.init_from = str(write_clip_run(tmp / "clip", args.arch, image_size=224 if args.arch == "RN50" else 96))
        cfg.proposals = dataclasses.replace(cfg.proposals, source=str(tmp / "rpn"))
        cfg.text = dataclasses.replace(cfg.text, templates=["a photo of a {}."])  # build cost only, not timed
        method = ovd.build(cfg)
        nets = merge_nets(method.networks(), frozen_networks(method))
        for net in nets.values():
            net.eval()
        classes = len(method.categories.ids)
        reference = torchvision.models.detection.fasterrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=classes + 1, min_size=args.size,
            max_size=max(1333, args.size), rpn_post_nms_top_n_test=cfg.proposals.post_nms_top_n).eval()
        gen = torch.Generator().manual_seed(0)
        shape = (3, args.size, args.size * 4 // 3)  # a 3:4 photo with the shorter side at --size
        times: dict[str, list[float]] = {"ovd": [], "torchvision": []}
        boxes: dict[str, list[int]] = {"ovd": [], "torchvision": []}
        with torch.no_grad():
            for i in range(args.images + 1):  # the first round warms up
                image = torch.randint(0, 256, shape, generator=gen, dtype=torch.uint8)
                start = cpu()
                ours = method.predict_batch(nets, [image])[0]
                t_ours = cpu() - start
                start = cpu()
                theirs = reference([image.float() / 255])[0]
                t_ref = cpu() - start
                if i:
                    times["ovd"].append(t_ours)
                    times["torchvision"].append(t_ref)
                    boxes["ovd"].append(len(ours.boxes))
                    boxes["torchvision"].append(len(theirs["boxes"]))
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        median = {k: statistics.median(v) for k, v in times.items()}
        result = {"arch": args.arch, "size": list(shape[1:]), "threads": args.threads, "classes": classes,
                  "proposals": cfg.proposals.post_nms_top_n, "images": args.images,
                  "ovd_images_per_cpu_s": round(1 / median["ovd"], 3),
                  "torchvision_images_per_cpu_s": round(1 / median["torchvision"], 3),
                  "ovd_over_torchvision_time": round(median["ovd"] / median["torchvision"], 2),
                  "detections_per_image": {k: statistics.median(v) for k, v in boxes.items()},
                  "peak_rss_mb": round(peak_mb)}
        print(json.dumps(result, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
