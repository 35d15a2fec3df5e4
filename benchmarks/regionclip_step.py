"""RegionCLIP's pretraining step against the teacher's forward alone (issue 17, "Speed").

One process builds the real ``regionclip`` method (a random CLIP teacher of ``--arch`` written as a ``clip`` run, the
tiny fake COCO of the tests for its categories and captions) and times, on one fixed synthetic batch of ``--batch-size``
letterboxed images with ``--regions`` random boxes each, alternating so that a loaded machine slows both alike:

* ``teacher``: what the teacher alone does per step (trunk, RoI head on every region, the captions' text embeddings),
  without gradient: the cost of pseudo-labelling;
* ``step``: the whole ``training_step`` (teacher, student on the regions and the whole-image boxes, the three losses),
  its backward and an SGD step.

    .venv/bin/python benchmarks/regionclip_step.py                        # configs/regionclip/synth-full.yaml's
    .venv/bin/python benchmarks/regionclip_step.py --regions 100          # the paper's 100 regions per image

Results are recorded in benchmarks/README.md (section "RegionCLIP step").
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.methods.open_vocab: the fake COCO and the clip-run writer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="tiny")
    parser.add_argument("--size", type=int, default=160, help="letterbox side (synth-full: 160)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--regions", type=int, default=50, help="regions per image (synth-full: 50)")
    parser.add_argument("--concepts", type=int, default=16, help="concept pool size K")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from lowlabel.methods.open_vocab import regionclip as rc
    from lowlabel.models.clip import c4_parts, tokenize
    from tests.methods.open_vocab.coco_fake import write_coco
    from tests.methods.open_vocab.test_regionclip import write_clip_run

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="regionclip-bench-"))
    cfg = rc.RegionCLIPConfig(init_from=str(write_clip_run(tmp / "clip", args.arch, image_size=96)),
                              data=rc.RegionCLIPDataConfig(root=str(write_coco(tmp / "coco")), regions="gt",
                                                           image_size=args.size))
    method = rc.build(cfg)
    nets = {"model": method.model, "teacher": method.teacher}
    gen = torch.Generator().manual_seed(0)
    dim = int(method.teacher.text_projection.shape[1])
    method._concept_emb = torch.nn.functional.normalize(torch.randn(args.concepts, dim, generator=gen), dim=-1)
    s, b = args.size, args.batch_size
    corners = torch.rand(b, args.regions, 2, generator=gen) * s * 0.7  # (B, R, 2)
    sides = torch.rand(b, args.regions, 2, generator=gen) * s * 0.3 + 4  # (B, R, 2)
    batch = {"image": torch.randn(b, 3, s, s, generator=gen),
             "tokens": tokenize(["a photo of a red box and a blue box."] * b, int(method.model.context_length)),
             "boxes": list(torch.cat([corners, corners + sides], dim=2)), "flip": [False] * b}
    opt = method.optimizers(nets)["model"]
    times: dict[str, list[float]] = {"teacher": [], "step": []}
    cpu: dict[str, list[float]] = {"teacher": [], "step": []}
    for _ in range(args.warmup + args.steps):
        t0, c0 = time.perf_counter(), time.process_time()
        with torch.no_grad():
            teacher = method.teacher
            rc.region_embeddings(teacher, c4_parts(teacher).trunk(batch["image"]), batch["boxes"],
                                 pool_size=method.pool_size)
            teacher.encode_text(batch["tokens"])
        times["teacher"].append(time.perf_counter() - t0)
        cpu["teacher"].append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        out = next(method.training_step(nets, batch, 0))
        out.losses["model"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times["step"].append(time.perf_counter() - t0)
        cpu["step"].append(time.process_time() - c0)
    result = {
        "setting": vars(args),
        "step_s": {k: statistics.median(v[args.warmup:]) for k, v in times.items()},
        "cpu_s": {k: statistics.median(v[args.warmup:]) for k, v in cpu.items()},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    result["ratio_cpu"] = result["cpu_s"]["step"] / result["cpu_s"]["teacher"]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
