"""How much of a trained ContrastCorr encoder's attention leaves its own video (issue 16 diagnosis).

For a run folder of ``lowlabel train contrastcorr`` (its chosen checkpoint, as ``evaluate`` loads it), draws
``--batches`` batches of ``--batch`` frame pairs from the training clips with a fixed seed (the same pairs and crop
boxes for every run), encodes the reference and target crops without channel dropout, and reports

* ``cross_video_mass``: the inter-video transformation's sparsity term, the mean over target cells of the attention
  mass (softmax over the reference cells of all videos in the batch) that falls outside the cell's own video: what
  the inter-video stage trains down, and what an intra-only encoder never sees;
* ``own_cell_mass``: within the own video only (softmax over its reference cells), the mass on the reference cell
  at the target cell's own position (the pairs are the same box in two frames, so for a static scene this is the
  right match; a measure of how peaked the within-video matching is).

    python benchmarks/contrastcorr_inter_mass.py --run runs/contrastcorr-full/contrastcorr-s0 \\
        --run runs/contrastcorr-full/intra-only-s0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from lowlabel.engine import load_method_from_run
from lowlabel.losses import contrastcorr as L
from lowlabel.methods.correspondence.common import encoder_input
from lowlabel.methods.correspondence.contrastcorr import STRIDE, random_boxes, take


def pairs(method, batches: int, batch: int, seed: int) -> list[torch.Tensor]:
    """``batches`` tensors (B, 2, 3, crop, crop) LAB: reference and target crops of the same box."""
    torch.manual_seed(seed)
    data = method.train_dataset()
    order = torch.randperm(len(data))[: batches * batch].tolist()
    crop, full = method.config.data.crop, method.config.data.full
    out = []
    for k in range(batches):
        frames = method.collate([data[i] for i in order[k * batch : (k + 1) * batch]])  # (B, 2, 3, full, full)
        corners = random_boxes(len(frames), full, crop)
        out.append(torch.stack([take(frames[:, 0], corners, crop), take(frames[:, 1], corners, crop)], dim=1))
    return out


@torch.no_grad()
def measure(run: Path, batches: int, batch: int, seed: int) -> dict[str, float]:
    loaded = load_method_from_run(run, method_name="contrastcorr")
    method, encoder = loaded.method, loaded.nets["encoder"].eval()
    temp = method.config.contrastcorr.temp
    cross, own = [], []
    for pair in pairs(method, batches, batch, seed):
        f_ref = encoder(encoder_input(pair[:, 0])).flatten(2)  # (B, C, N)
        f_tgt = encoder(encoder_input(pair[:, 1])).flatten(2)
        values = torch.zeros(f_ref.shape[0], 1, f_ref.shape[2])
        _, sparsity = L.inter_video_transform(f_tgt, f_ref, values, temp=temp)
        cross.append(float(sparsity))
        weights = torch.softmax(L.affinity(f_ref, f_tgt) * temp, dim=1)  # (B, N_ref, N_tgt), own video only
        own.append(float(weights.diagonal(dim1=1, dim2=2).mean()))
    cells = method.config.data.crop // STRIDE
    return {"cross_video_mass": sum(cross) / len(cross), "own_cell_mass": sum(own) / len(own),
            "cells_per_crop": cells * cells, "pairs": batches * batch}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", required=True, help="a contrastcorr run folder")
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16, help="videos per batch (the training batch)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for run in args.run:
        print(json.dumps({"run": str(run), **measure(run, args.batches, args.batch, args.seed)}))


if __name__ == "__main__":
    main()
