"""Peak memory of a WSOL evaluation (``lowlabel evaluate cam``) as a function of the split size.

Writes a wsolevaluation-layout folder with ``--num-images`` random 64x64 test images (one box each) and 32
train images, trains a tiny CAM for one step, then runs ``lowlabel evaluate cam --split test`` in a child process
under ``/usr/bin/time -v`` and reports its maximum resident set size. The reference is the same command on a
split of ``--reference-images`` images (default 100), measured in the same run: the difference is what the
evaluation keeps per image (every 224x224 float32 score map is 196 KiB).

    .venv/bin/python benchmarks/wsol_eval_memory.py --num-images 5000
    # the same measurement on another checkout (e.g. before a change), with this venv's packages:
    .venv/bin/python benchmarks/wsol_eval_memory.py --num-images 5000 --lowlabel-src /tmp/before
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64


def write_split(root: Path, split: str, n: int, num_classes: int, rng: np.random.Generator) -> None:
    """``n`` random images with one box each, in the wsolevaluation layout under ``root``."""
    img_dir = root / "images" / "Bench" / split
    meta = root / "metadata" / "Bench" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    meta.mkdir(parents=True, exist_ok=True)
    ids, labels, sizes, boxes = [], [], [], []
    for i in range(n):
        image_id = f"{split}/{i:06d}.png"
        label = int(rng.integers(num_classes))
        x0, y0 = (int(v) for v in rng.integers(0, SIZE // 2, 2))
        w, h = (int(v) for v in rng.integers(8, SIZE // 2, 2))
        pixels = rng.integers(0, 60, (SIZE, SIZE, 3), dtype=np.uint8)
        pixels[y0 : y0 + h, x0 : x0 + w] = 60 + 190 * label // max(num_classes - 1, 1)
        Image.fromarray(pixels).save(root / "images" / "Bench" / image_id)
        ids.append(image_id)
        labels.append(f"{image_id},{label}")
        sizes.append(f"{image_id},{SIZE},{SIZE}")
        boxes.append(f"{image_id},{x0},{y0},{x0 + w - 1},{y0 + h - 1}")
    for name, lines in (("image_ids", ids), ("class_labels", labels), ("image_sizes", sizes),
                        ("localization", boxes)):
        (meta / f"{name}.txt").write_text("\n".join(lines) + "\n")


CONFIG = """\
data: {{root: "{root}", dataset: Bench, resize_size: 72, crop_size: 64}}
model: {{backbone: resnet_small, width: 8}}
trainer: {{max_steps: 1, batch_size: 16, eval_split: val, seed: 0}}
"""


def run(cmd: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return proc.stderr


def peak_mib(stderr: str) -> float:
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    if match is None:
        raise SystemExit("could not read the maximum resident set size from /usr/bin/time -v")
    return int(match.group(1)) / 1024


def measure(work: Path, n: int, env: dict[str, str]) -> float:
    """Peak RSS (MiB) of ``lowlabel evaluate cam --split test`` on an ``n``-image test split."""
    rng = np.random.default_rng(0)
    root = work / f"data{n}"
    write_split(root, "train", 32, 4, rng)
    write_split(root, "val", 8, 4, rng)
    write_split(root, "test", n, 4, rng)
    cfg = work / f"cam{n}.yaml"
    cfg.write_text(CONFIG.format(root=root))
    lowlabel = [sys.executable, "-m", "lowlabel.cli.main"]
    run_dir = work / f"run{n}"
    run([*lowlabel, "train", "cam", "--config", str(cfg), "--run-dir", str(run_dir), "--no-progress"], env)
    return peak_mib(run([*lowlabel, "evaluate", "cam", "--ckpt", str(run_dir), "--split", "test"], env))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=5000)
    parser.add_argument("--reference-images", type=int, default=100)
    parser.add_argument("--lowlabel-src", default="", help="checkout whose lowlabel/ package to measure")
    args = parser.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if args.lowlabel_src:
        env["PYTHONPATH"] = str(Path(args.lowlabel_src).resolve())
    with tempfile.TemporaryDirectory() as tmp:
        ref = measure(Path(tmp), args.reference_images, env)
        big = measure(Path(tmp), args.num_images, env)
    src = args.lowlabel_src or "this checkout"
    print(f"| lowlabel | peak RSS, {args.reference_images} images | peak RSS, {args.num_images} images | difference |")
    print("|---|---|---|---|")
    print(f"| {src} | {ref:.0f} MiB | {big:.0f} MiB | {big - ref:+.0f} MiB |")


if __name__ == "__main__":
    main()
