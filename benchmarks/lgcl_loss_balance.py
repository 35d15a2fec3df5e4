"""How much of an LGCL generator update comes from L_GA: gradient norms of the generator loss's parts, per part of G.

Loads a trained ``lgcl`` run, draws a few training batches (target trainB + source trainA, no labels, no test image)
and, for each, back-propagates separately (1) CUT's part, lambda_GAN * L_GAN + lambda_NCE * L_PatchNCE, and (2)
lambda_lg * L_GA, reporting the L2 norm of each gradient over the parameters of E_B (the shared encoder), G_A (the
attention generator) and G_C (the content generator), plus the loss values; and, on the same target images, how
G_A spends its n + 1 masks (eval mode): the mean weight of the identity mask A_{n+1} (the input passed through), the
mean of the largest content mask, and the masks' mean entropy (ln(n + 1) = 2.30 is uniform). It also reads the run's
``logs/metrics.csv`` for L_GA over training, against ln(K + 1), an InfoNCE whose query cannot tell its key from the
K queued negatives.

    .venv/bin/python benchmarks/lgcl_loss_balance.py runs/lgcl-full/lgcl-s0 [--batches 4]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cut_part(method, nets, batch):  # type: ignore[no-untyped-def]
    """CUT's part of the generator loss: the harness's own G phase with the extension (L_GA) set aside."""
    extra, method.extra = method.extra, None
    try:
        phases = list(method.training_step(nets, batch, 0))  # D phase, then G phase
    finally:
        method.extra = extra
    return phases[-1].losses["G"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="an lgcl run folder")
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args()

    import torch

    from lowlabel.engine.run import load_method_from_run
    from lowlabel.methods.cross_domain.translation import plain

    torch.manual_seed(0)
    loaded = load_method_from_run(args.run)
    method, nets = loaded.method, loaded.nets
    for name in ("G", "F", "lg_heads"):
        nets[name].train()
    g = plain(nets["G"])
    groups = {"E_B": list(g.encoder.parameters()), "G_A": list(g.attention.parameters()),
              "G_C": [p for n, p in g.named_parameters() if not n.startswith(("encoder.", "attention."))]}
    data = method.train_dataset()
    loader = torch.utils.data.DataLoader(data, batch_size=method.config.trainer.batch_size, shuffle=True,
                                         collate_fn=getattr(method, "collate", None))
    rows: dict[str, list[float]] = {}
    for k, batch in enumerate(loader):
        if k == args.batches:
            break
        x = batch["x"]  # the target images
        g.eval()
        with torch.no_grad():
            masks = g.translate(x).attention  # (B, n + 1, H, W), a softmax over the masks
        g.train()
        rows.setdefault("identity mask mean", []).append(float(masks[:, -1].mean()))
        rows.setdefault("largest content mask mean", []).append(float(masks[:, :-1].max(1).values.mean()))
        rows.setdefault("mask entropy", []).append(float(-(masks * masks.clamp_min(1e-12).log()).sum(1).mean()))
        for part in ("CUT", "L_GA") if method.config.lg.weight > 0 else ("CUT",):  # --lg.weight 0: no L_GA
            for p in g.parameters():
                p.grad = None
            loss = cut_part(method, nets, batch) if part == "CUT" else method.extra.generator_loss(nets, x)[0]
            loss.backward()
            rows.setdefault(f"{part} loss", []).append(float(loss.detach()))
            for group, params in groups.items():
                norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params if p.grad is not None))
                rows.setdefault(f"{part} grad {group}", []).append(norm)
    result = {key: round(statistics.median(values), 4) for key, values in rows.items()}
    for group in groups if method.config.lg.weight > 0 else ():
        result[f"L_GA / CUT grad {group}"] = round(result[f"L_GA grad {group}"] / max(result[f"CUT grad {group}"],
                                                                                       1e-12), 2)
    curve = {}
    with open(Path(args.run) / "logs" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row["key"] == "train/loss_LG_gg":
                curve[int(row["step"])] = round(float(row["value"]), 3)
    steps = sorted(curve)
    result["loss_LG_gg over training"] = {s: curve[s] for s in steps[:: max(1, len(steps) // 6)] + steps[-1:]}
    result["ln(K + 1)"] = round(math.log(method.config.lg.queue_size + 1), 3)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
