"""Label propagation without learning on ShapesWorld ``davis/`` val: the raw-pixel (LAB) baseline of issue 16.

Features are the frames' LAB values averaged over stride x stride cells; propagation is
:mod:`lowlabel.models.propagation` with the paper's (ContrastCorr) and CRW's settings; results are scored with the
DAVIS-2017 protocol (J&F, percent). Prints one Markdown table; with ``--out DIR``, each row's numbers also go to
``DIR/stride<s>-<paper|crw>/metrics.json`` with an ``env.json``, run folders that ``write_result.py`` reads (the
raw-pixel row of ``contrastcorr-full.json``).

    python benchmarks/propagation_baselines.py --root synth:full --strides 8 4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from lowlabel.data import resolve_root
from lowlabel.data.davis import DAVIS2017
from lowlabel.engine.logging import environment_info, write_json
from lowlabel.methods.correspondence.common import evaluate_davis, pixel_encoder
from lowlabel.models.propagation import CRW, PAPER

SETTINGS = (("paper", "paper (top-5, first + 7)", PAPER), ("crw", "CRW (top-10, radius 12, 20)", CRW))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="synth:full", help="a DAVIS-layout folder or synth:<preset>")
    parser.add_argument("--split", default="val")
    parser.add_argument("--strides", type=int, nargs="+", default=[8, 4])
    parser.add_argument("--out", type=Path, default=None, help="also write each row as a run folder under this")
    parser.add_argument("--short-side", type=int, default=0,
                        help="resize frames to this shorter side before the features (0 = as stored)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    dataset = DAVIS2017(root=resolve_root(args.root, "davis"), split=args.split)
    size = f"short side {args.short_side}" if args.short_side else "frames as stored"
    print(f"| features | propagation | J&F | J | F | CPU s |  ({args.root} {args.split}, {len(dataset)} sequences, "
          f"{size})")
    print("|---|---|---|---|---|---|")
    for stride in args.strides:
        for key, name, cfg in SETTINGS:
            start = time.process_time()
            with tempfile.TemporaryDirectory() as out:
                result = evaluate_davis(pixel_encoder(stride), dataset, Path(out), cfg=cfg, stride=stride,
                                        short_side=args.short_side)
            m = result["metrics"]
            if args.out is not None:
                folder = args.out / f"stride{stride}-{key}"
                write_json(folder / "metrics.json", {**m, "split": args.split})
                write_json(folder / "env.json", environment_info(method="raw-pixel propagation", seed=0, device="cpu",
                                                                 world_size=1, precision="32"))
            print(f"| LAB pixels, stride {stride} | {name} | {m['J&F-Mean']:.1f} | {m['J-Mean']:.1f} | "
                  f"{m['F-Mean']:.1f} | {time.process_time() - start:.0f} |")


if __name__ == "__main__":
    main()
