"""Where the ``ovd`` transfer's scores go wrong: per-RoI statistics of a detector on val proposals, before NMS.

For each of the first ``--images`` val images, the frozen RPN's proposals are scored by the detector's head as in
evaluation (cosine to all classes' text embeddings / temperature, the background logit, softmax). Proposals with
IoU >= 0.5 to a GT box are foreground (their class is the GT's), IoU < 0.3 background. Reported:

- foreground top-1 over all classes (chance = 1 / classes);
- base-class objects' top-1 among the base classes alone (what training sees), and novel-class objects' top-1 among
  the novel classes alone (whether the features tell the novel classes apart at all, whatever the base ones score);
- the share of foreground and of background proposals whose best class has p > 0.5 (a working background keeps the
  latter low), and the mean RoI feature norm;
- the mean cosine of all proposals to the base and to the novel text embeddings, and the class that wins most
  proposals with its share.

``--run`` is a trained ovd run; without it, the untrained head built on ``--init`` with ``--config`` (step 0 of the
transfer). Use a second ShapesWorld world (``--root synth:full:1``) to look without touching the val split the
studies report.

    .venv/bin/python benchmarks/ovd_roi_probe.py --init runs/clip16/clip-s0 --rpn runs/regionclip-full/rpn \
        --root synth:full:1 [--run runs/ovd-dev16/NAME] [--images 40]

Seen 2026-12-05 (world 1, 40 images, 1,488 foreground and 7,392 background proposals), from the coco/ 1.6 teacher
runs/clip16/clip-s0: after 200 transfer steps of any variant that trains the tower (benchmarks/README, "The OVD
transfer on a second world") one novel class (sheep) wins 93-100 % of all proposals, while base objects keep 57-60 %
top-1 among the base classes. (The numbers this docstring showed before came from runs/clip-teacher/clip-s0, a coco/
1.5 teacher that never saw four of the five 1.6 novel categories.)
"""

import argparse
import dataclasses
import json

import torch
from torchvision.ops import box_iou

from lowlabel.engine.config import load_config_file
from lowlabel.engine.frozen import frozen_networks, merge_nets
from lowlabel.engine.run import load_method_from_run
from lowlabel.methods.open_vocab import ovd


def probe(m, nets, n=40):  # type: ignore[no-untyped-def]
    view = m._view("val", train=False)
    net = nets["model"]
    emb, novel, base_cols = net.class_emb, m.categories.novel, m.base_cols
    novel_cols = torch.nonzero(novel).flatten()
    stats = {"fg": 0, "fg_correct": 0, "fg_correct_base": 0, "fg_base": 0, "fg_novel": 0, "fg_correct_novel": 0,
             "fg_maxp": 0.0, "fg_conf": 0, "bg": 0, "bg_conf": 0, "feat_norm": 0.0}
    cosines, winners = [], torch.zeros(len(emb), dtype=torch.int64)
    with torch.no_grad():
        for i in range(n):
            it = view[i]
            img = it["image"]
            (p,), _, feats, probs = m.proposal_scores(nets, [img], emb)  # every class, before NMS
            stats["feat_norm"] += float(feats.norm(dim=1).mean()) / n
            cosines.append(torch.nn.functional.normalize(feats, dim=1) @ emb.t())  # (R, C)
            winners += torch.bincount(probs.argmax(1), minlength=len(emb))
            gtb = torch.as_tensor(it["boxes"]).float().reshape(-1, 4)
            if len(gtb) == 0:
                continue
            iou = box_iou(p.boxes, gtb)
            best, idx = iou.max(1)
            fg = best >= 0.5
            labels = torch.as_tensor(it["labels"])[idx]
            maxp, arg = probs.max(1)
            stats["fg"] += int(fg.sum())
            stats["bg"] += int((best < 0.3).sum())
            stats["fg_correct"] += int((arg[fg] == labels[fg]).sum())
            fg_base = fg & ~novel[labels]  # base-class objects scored among the base classes alone
            stats["fg_base"] += int(fg_base.sum())
            stats["fg_correct_base"] += int((base_cols[probs[:, base_cols].argmax(1)] == labels)[fg_base].sum())
            fg_novel = fg & novel[labels]  # novel-class objects scored among the novel classes alone
            stats["fg_novel"] += int(fg_novel.sum())
            stats["fg_correct_novel"] += int((novel_cols[probs[:, novel_cols].argmax(1)] == labels)[fg_novel].sum())
            stats["fg_maxp"] += float(maxp[fg].sum())
            stats["fg_conf"] += int((maxp[fg] > 0.5).sum())
            stats["bg_conf"] += int((maxp[best < 0.3] > 0.5).sum())
    cos = torch.cat(cosines)  # (all proposals, C)
    top = int(winners.argmax())
    return {"fg RoIs": stats["fg"], "fg top-1 acc %": round(100 * stats["fg_correct"] / max(stats["fg"], 1), 1),
            "base fg top-1 among base classes %": round(100 * stats["fg_correct_base"] / max(stats["fg_base"], 1), 1),
            "novel fg top-1 among novel classes %": round(100 * stats["fg_correct_novel"]
                                                          / max(stats["fg_novel"], 1), 1),
            "fg mean max prob": round(stats["fg_maxp"] / max(stats["fg"], 1), 3),
            "fg with p>0.5 %": round(100 * stats["fg_conf"] / max(stats["fg"], 1), 1),
            "bg RoIs": stats["bg"], "bg with p>0.5 %": round(100 * stats["bg_conf"] / max(stats["bg"], 1), 1),
            "RoI feature norm": round(stats["feat_norm"], 2),
            "mean cosine to base / novel text": [round(float(cos[:, ~novel].mean()), 3),
                                                 round(float(cos[:, novel].mean()), 3)],
            "top class of all proposals": [m.categories.names[top],
                                           round(100 * float(winners[top] / winners.sum()), 1)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/ovd/synth-full.yaml")
    parser.add_argument("--init", required=True, help="the clip or regionclip run the transfer starts from")
    parser.add_argument("--rpn", required=True, help="the class-agnostic RPN run (proposals.source)")
    parser.add_argument("--root", default="synth:full:1")
    parser.add_argument("--run", default="", help="a trained ovd run (default: the untrained head)")
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.run:
        loaded = load_method_from_run(args.run)
        method, nets = loaded.method, loaded.nets
    else:
        cfg = load_config_file(ovd.CONFIG, args.config)
        cfg = dataclasses.replace(cfg, init_from=args.init,
                                  data=dataclasses.replace(cfg.data, root=args.root),
                                  proposals=dataclasses.replace(cfg.proposals, source=args.rpn))
        method = ovd.build(cfg)
        nets = merge_nets(dict(method.networks()), frozen_networks(method))
    print(json.dumps(probe(method, nets, args.images), indent=1))


if __name__ == "__main__":
    main()
