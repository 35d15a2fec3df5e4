"""Where SIPE's seeds lose on ShapesWorld ``voc/``: the seeds, the features, or the object itself (issue 7).

Loads a run folder written by ``lowlabel train sipe`` and, on a split with GT masks (default ``val``, so the
diagnosis never looks at the ``train`` images the seeds are scored on), measures:

* ``seed_mIoU``: the seeds as ``lowlabel evaluate`` makes them (structure-aware seeds on the hierarchical features,
  prototypes, IS-CAM, multi-scale + flip, argmax over background and the image's classes);
* ``gt_prototype_mIoU``: the same IS-CAM, but with prototypes averaged over the GT mask (downsampled nearest; the 255
  band counted as background) instead of the structure-aware seeds. It is what the learnt hierarchical features could
  give with perfect seeds;
* ``marking_prototype_cosine``: the prototype of the visible markings (``voc/diagnostics/<id>_marking.png``) at scale 1
  with flip, and the mean ReLU cosine of the features of marking, body (object minus marking) and background pixels to
  it. SIPE can grow seeds from the marking, where CAM fires, to the body only if the body is closer to the marking
  than the background is;
* ``body_structure_share``: where a body pixel's structure map (the ReLU cosine to every other pixel on the
  hierarchical features, scale 1, the map SIPE's seeds intersect with the CAMs) puts its mass: on its own object's
  class, on objects of other classes, on the GT background (texture and distractors); ``body_area_share`` is the
  same with every similarity 1, i.e. what features without any structure would give;
* ``cam_mIoU_best_threshold``: the run's own CAM at the background threshold that is best on this split (an oracle
  choice, for diagnosis only).

``--bg-alpha`` / ``--bg-iou-weight`` re-run the inference with another background exponent or background IoU factor
(``sipe.bg_alpha`` / ``sipe.bg_iou_weight``; the training is not repeated).

``--cam-blur SIGMA`` is a counterfactual: the network's CAM is blurred (Gaussian, sigma in feature cells) before
anything uses it, for SIPE's seeds and for the CAM baseline alike. It spreads the activation from the marking over
the body and the surroundings without following the object's shape, as the coarse CAMs of real VOC classifiers do,
and asks whether SIPE's structure step gains over CAM once CAM's best background threshold is in VOC's range.

``--errors RUN [RUN ...]`` instead reads the seed PNGs that ``lowlabel train`` / ``evaluate`` wrote
(``<run>/eval/<split>/seeds``, any WSSS method) and splits their errors: the shares of GT object pixels called
background, of GT background pixels called an object (per object pixel) and of object pixels given another class.

Examples::

    python benchmarks/sipe_seed_diagnosis.py --run /tmp/vocp/runs/VE-sipe-s0 --split val --limit 200
    python benchmarks/sipe_seed_diagnosis.py --errors /tmp/vocp/runs/VE-mlcam-s0 /tmp/vocp/runs/VE-sipe-s0 --split train
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn


def nearest(array: np.ndarray, size: tuple[int, ...]) -> Tensor:
    """(H, W) label map or mask resized to the feature ``size`` (nearest), as a float tensor."""
    return F.interpolate(torch.as_tensor(array.astype(np.float32))[None, None], size=size, mode="nearest")[0, 0]


def gt_seeds(gt: np.ndarray, size: tuple[int, int], lab1: Tensor) -> Tensor:
    """(1, K1, h, w) one-hot seeds from a GT label map (255 -> background), masked by the image's classes."""
    g = nearest(gt, size).long()
    g[g == 255] = 0
    k1 = lab1.shape[1]
    return F.one_hot(g.clamp_max(k1 - 1), k1).permute(2, 0, 1)[None].float() * lab1


def marking_cosines(hier: Tensor, gt: np.ndarray, marking: np.ndarray) -> tuple[float, float, float] | None:
    """Mean relu(cos) of marking / body / background features to the marking prototype; None if one set is empty."""
    from lowlabel.losses import sipe as L

    size = hier.shape[2:]
    mark, obj, bg = (nearest(m, size).bool() for m in (marking, (gt > 0) & (gt != 255), gt == 0))
    body = obj & ~mark
    if not mark.any() or not body.any() or not bg.any():
        return None
    proto = L.prototypes(mark[None, None].float(), hier)  # (1, 1, C)
    cos = L.is_cam(proto, hier)[0, 0]  # (h, w)
    return float(cos[mark].mean()), float(cos[body].mean()), float(cos[bg].mean())


def structure_shares(hier: Tensor, gt: np.ndarray, marking: np.ndarray) -> np.ndarray | None:
    """(n_body, 2, 3): for each body pixel, the shares of its structure-map mass (row 0) and of the image area
    (row 1, what features without structure would give) on its own class / other classes / background."""
    from lowlabel.losses import sipe as L

    size = hier.shape[2:]
    g, mark = nearest(gt, size).long().flatten(), nearest(marking, size).bool().flatten()
    body = (g > 0) & (g != 255) & ~mark
    if not body.any():
        return None
    # each body pixel's features as a "prototype": IS-CAM's relu(cos) against all pixels is its structure map
    structure = L.is_cam(hier[0].flatten(1)[:, body].T[None], hier)[0].flatten(1)  # (n_body, N)
    own = g[body][:, None] == g[None, :]  # (n_body, N)
    groups = [own, (g[None, :] > 0) & (g[None, :] != 255) & ~own, (g == 0)[None, :].expand_as(own)]
    out = []
    for s in (structure, torch.ones(own.shape)):
        parts = torch.stack([(s * m).sum(1) for m in groups], 1)  # (n_body, 3), the 255 band left out
        out.append(parts / parts.sum(1, keepdim=True).clamp_min(1e-8))
    return torch.stack(out, 1).numpy()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of (B, C, h, w) maps (kernel 2 * ceil(3 sigma) + 1, replicated edges)."""
    r = int(np.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype) / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


class SpreadCAM(nn.Module):
    """``net`` with its CAM replaced by the Gaussian-blurred ReLU CAM (``--cam-blur``)."""

    def __init__(self, net: nn.Module, sigma: float) -> None:
        super().__init__()
        self.net, self.sigma = net, sigma

    def forward(self, x: Tensor) -> Any:
        out = self.net(x)
        out.cam = gaussian_blur(F.relu(out.cam), self.sigma)
        return out


def seed_errors(run: Path, split: str, limit: int | None = None, maps: str = "seeds") -> dict[str, Any]:
    """Error shares of the seed PNGs in ``<run>/eval/<split>/<maps>`` (``seeds``, or the refined ``pseudo`` masks)
    against the GT masks of the run's data, from the scoring suite's confusion matrix (255 ignored). ``maps="predict"``
    runs the run's network (``lowlabel.load(run).predict``, one scale, e.g. a ``seg`` run's DeepLabV3) on the
    split's images instead."""
    from lowlabel.engine.config import load_config_file
    from lowlabel.methods import method_module
    from lowlabel.methods.wsss import common
    from lowlabel.metrics.semseg import SegEvaluator, miou_from_confusion

    name = json.loads((run / "env.json").read_text())["method"]
    config = load_config_file(method_module(name).CONFIG, run / "config.yaml")
    gt_dir = common.resolve_voc_root(config.data.root) / "SegmentationClass"
    evaluator = SegEvaluator(num_classes=len(common.class_names(config.data)) + 1)
    if maps == "predict":  # the images and masks as the run's own evaluation reads them
        import lowlabel

        model = lowlabel.load(run)
        ds = common.WSSSData(config.data).split(split)
        for i in range(len(ds) if limit is None else min(limit, len(ds))):
            sample = ds[i]
            if sample.get("mask") is not None:
                pred = model.predict(torch.as_tensor(sample["image"])).mask.numpy()
                evaluator.update(pred, np.asarray(sample["mask"], dtype=np.uint8).reshape(pred.shape))
    else:
        for png in sorted((run / "eval" / split / maps).glob("*.png"))[:limit]:
            if (gt_dir / png.name).is_file():
                evaluator.update(np.asarray(Image.open(png)), np.asarray(Image.open(gt_dir / png.name)))
    if not evaluator.count:
        raise SystemExit(f"{run / 'eval' / split / maps}: no PNGs with a GT mask in {gt_dir}")
    conf = evaluator.confusion  # rows GT, columns seed
    obj = max(int(conf[1:].sum()), 1)
    return {"run": str(run), "method": name, "split": split, "maps": maps, "images": evaluator.count,
            "mIoU": 100 * miou_from_confusion(conf),
            "object_pixels_per_gt_object_pixel": conf[:, 1:].sum() / obj,
            "object_called_background": conf[1:, 0].sum() / obj,
            "background_called_object_per_object_pixel": conf[0, 1:].sum() / obj,
            "object_called_other_class": (conf[1:, 1:].sum() - np.trace(conf[1:, 1:])) / obj}


def diagnose(run: Path, split: str, limit: int | None, ckpt: str = "last.ckpt",
             overrides: dict[str, float] | None = None, cam_blur: float = 0.0) -> dict[str, Any]:
    """The measurements of the module docstring for ``run`` on ``split`` (first ``limit`` images).

    ``overrides``: SIPE parameters (``bg_alpha``, ``bg_iou_weight``) to run the inference with.
    ``cam_blur``: > 0 blurs the CAM with this sigma (feature cells) everywhere (see ``--cam-blur``).
    """
    from dataclasses import replace

    from lowlabel.engine.run import load_method_from_run
    from lowlabel.losses import sipe as L
    from lowlabel.methods.wsss import common, inference
    from lowlabel.metrics.semseg import BackgroundThresholdSearch, SegEvaluator

    loaded = load_method_from_run(run / "checkpoints" / ckpt, method_name="sipe")
    method, model = loaded.method, loaded.nets["model"]
    if cam_blur > 0:
        model = SpreadCAM(model, cam_blur)
    if overrides:
        method.config = replace(method.config, sipe=replace(method.config.sipe, **overrides))
    infer = method.config.infer
    ds = method.data.split(split)
    k1 = method.num_classes + 1
    seeds_eval, gt_eval = SegEvaluator(num_classes=k1), SegEvaluator(num_classes=k1)
    cam_search = BackgroundThresholdSearch(k1, thresholds=np.arange(1, 96) / 100)
    cosines, shares = [], []
    n = min(limit, len(ds)) if limit else len(ds)
    with torch.no_grad():
        for i in range(n):
            s = ds[i]
            if s.get("mask") is None:
                continue
            labels = s["labels"].float()
            image = common.normalize_image(torch.as_tensor(s["image"]).as_subclass(torch.Tensor))
            gt = np.asarray(s["mask"], dtype=np.int64)
            hh, ww = gt.shape
            lab1 = torch.cat([labels.new_ones(1), labels]).view(1, -1, 1, 1)
            scores, _ = method.score_maps(model, image, labels)
            seeds_eval.update(inference.present_argmax(scores, labels).numpy(), gt)
            iscam_gt, cam = torch.zeros(k1, hh, ww), torch.zeros(k1 - 1, hh, ww)
            for scale in infer.scales:
                out = common.flip_fused_forward(model, image, scale, infer.flip)
                feats = out.hier if method.config.sipe.use_hierarchical else out.x4
                maps = L.is_cam(L.prototypes(gt_seeds(gt, feats.shape[2:], lab1), feats), feats)
                iscam_gt += F.interpolate(maps, size=(hh, ww), mode="bilinear", align_corners=False)[0]
                cam += F.interpolate(F.relu(out.cam), size=(hh, ww), mode="bilinear", align_corners=False)[0]
                if scale == 1.0:
                    marking = np.asarray(Image.open(method.data.root / "diagnostics" / f"{s['image_id']}_marking.png"))
                    c = marking_cosines(out.hier, gt, marking > 0)
                    if c is not None:
                        cosines.append(c)
                    sh = structure_shares(out.hier, gt, marking > 0)
                    if sh is not None:
                        shares.append(sh)
            iscam_gt = iscam_gt / (iscam_gt.amax(dim=(1, 2), keepdim=True) + L.EPS) * lab1[0]
            gt_eval.update(inference.present_argmax(iscam_gt, labels).numpy(), gt)
            cam = cam / (cam.amax(dim=(1, 2), keepdim=True) + L.EPS) * labels.view(-1, 1, 1)
            cam_search.update(cam.numpy(), gt, labels.numpy())
    best = cam_search.compute()
    cos = np.asarray(cosines) if cosines else np.full((1, 3), np.nan)
    share = np.concatenate(shares).mean(0) if shares else np.full((2, 3), np.nan)
    return {
        "run": str(run), "checkpoint": ckpt, "step": loaded.step, "split": split, "images": n,
        "sipe_overrides": overrides or {}, "cam_blur": cam_blur,
        "seed_mIoU": seeds_eval.compute()["mIoU"],
        "gt_prototype_mIoU": gt_eval.compute()["mIoU"],
        "marking_prototype_cosine": {"marking": float(cos[:, 0].mean()), "body": float(cos[:, 1].mean()),
                                     "background": float(cos[:, 2].mean()), "images": len(cosines)},
        "body_structure_share": {"own_class": float(share[0, 0]), "other_classes": float(share[0, 1]),
                                 "background": float(share[0, 2])},
        "body_area_share": {"own_class": float(share[1, 0]), "other_classes": float(share[1, 1]),
                            "background": float(share[1, 2])},
        "cam_mIoU_best_threshold": float(best["mIoU"]), "cam_best_threshold": float(best["threshold"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, help="a `lowlabel train sipe` run folder")
    parser.add_argument("--errors", type=Path, nargs="+", help="WSSS run folders: error shares of their seed PNGs")
    parser.add_argument("--maps", choices=("seeds", "pseudo", "predict"), default="seeds",
                        help="with --errors: the seeds, the refined pseudo masks, or the network's predictions "
                        "(e.g. a seg run's DeepLabV3) (default seeds)")
    parser.add_argument("--split", default="val", help="a voc/ split with GT masks (default val)")
    parser.add_argument("--limit", type=int, default=200, help="first N images (0 = all)")
    parser.add_argument("--checkpoint", default="last.ckpt")
    parser.add_argument("--bg-alpha", type=float, help="inference with this sipe.bg_alpha")
    parser.add_argument("--bg-iou-weight", type=float, help="inference with this sipe.bg_iou_weight")
    parser.add_argument("--cam-blur", type=float, default=0.0,
                        help="counterfactual: blur the CAM with this Gaussian sigma (feature cells) first")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.errors:
        result: Any = [seed_errors(run, args.split, args.limit or None, args.maps) for run in args.errors]
    elif args.run:
        overrides = {k: v for k, v in (("bg_alpha", args.bg_alpha), ("bg_iou_weight", args.bg_iou_weight))
                     if v is not None}
        result = diagnose(args.run, args.split, args.limit or None, args.checkpoint, overrides, args.cam_blur)
    else:
        parser.error("give --run or --errors")
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
