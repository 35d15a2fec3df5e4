"""AP50 of a trained ``ovd`` run under test-time variants, on the split its config names (for the study's transfer
settings: a second ShapesWorld world, ``--data.root synth:full:1`` at training, never the reported val split).

Variants: as trained; ``--objectness`` multiplies each class score by the RPN's objectness
(``roi.multiply_objectness``, RegionCLIP's LVIS ``MULTIPLY_RPN_SCORE``); ``--zero-regressor`` zeroes the box
regressor (the proposals' own boxes), to tell a failing classifier from failing boxes.

    .venv/bin/python benchmarks/ovd_score_variants.py --run runs/ovd-dev16/NAME --objectness
"""

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import torch

from lowlabel.engine.run import load_method_from_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a trained ovd run")
    parser.add_argument("--split", default="val")
    parser.add_argument("--objectness", action="store_true", help="score x RPN objectness")
    parser.add_argument("--zero-regressor", action="store_true", help="no box deltas")
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_method_from_run(args.run)
    method, nets = loaded.method, loaded.nets
    for net in nets.values():
        net.eval()
    roi = dataclasses.replace(method.config.roi, multiply_objectness=args.objectness)
    method.config = dataclasses.replace(method.config, roi=roi)
    if args.zero_regressor:
        with torch.no_grad():
            nets["model"].bbox_pred.weight.zero_()
            nets["model"].bbox_pred.bias.zero_()
    with tempfile.TemporaryDirectory() as out:
        result = method.evaluate(nets, args.split, Path(out))
    row = {"run": args.run, "objectness": args.objectness, "zero_regressor": args.zero_regressor}
    row.update({k: round(v, 2) for k, v in result.metrics.items() if k.startswith("AP50")})
    print(json.dumps(row))


if __name__ == "__main__":
    main()
