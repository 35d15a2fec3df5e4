"""Seeds, pseudo masks and their evaluation for the weakly-supervised segmentation methods.

The argmax over background + present classes, the optional affinity (IRN-style random walk) or CRF refinement,
the evaluation that writes seeds and pseudo masks as VOC palette PNGs plus ``per_image.csv``, CorLoc of the top
boxes and report samples, and prediction on a folder of images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from lowlabel.data.io import save_palette_png
from lowlabel.methods.base import EvalResult, ExportNet
from lowlabel.methods.wsss.common import InferConfig, ScoreFn, WSSSData, check_labels, normalize_image
from lowlabel.samples import SampleKeeper, save_sample, write_per_image
from lowlabel.structures import Segmentation, voc_palette


def present_argmax(scores: Tensor, labels: Tensor) -> Tensor:
    """argmax over background + the image's classes: (K1, H, W) scores, (K,) labels -> (H, W) int64 ids."""
    keep = torch.cat([labels.new_ones(1), labels]) > 0  # (K1,)
    masked = torch.where(keep[:, None, None], scores, torch.full_like(scores, -1.0))
    return masked.argmax(0)


def affinity_refine(scores: Tensor, feats: Tensor, *, beta: float, log2_steps: int) -> Tensor:
    """Random-walk refinement of (K1, H, W) scores with the feature affinity relu(cos)^beta (IRN-style).

    The transition matrix is column-normalised (IRN's ``trans_mat = aff / sum(aff, 0)``) and raised to the
    power 2^log2_steps by repeated squaring; the walk runs at the feature size (C, h, w) and is upsampled.
    """
    k1, hh, ww = scores.shape
    _, h, w = feats.shape
    f = feats.flatten(1)  # (C, N)
    f = f / f.norm(dim=0, keepdim=True).clamp_min(1e-5)
    aff = F.relu(f.t() @ f).pow(beta)  # (N, N)
    trans = aff / aff.sum(0, keepdim=True).clamp_min(1e-5)
    for _ in range(log2_steps):
        trans = trans @ trans
    small = F.adaptive_avg_pool2d(scores[None], (h, w))[0].flatten(1)  # (K1, N)
    walked = (small @ trans).view(1, k1, h, w)  # (1, K1, h, w)
    return F.interpolate(walked, size=(hh, ww), mode="bilinear", align_corners=False)[0]


def refine_scores(scores: Tensor, feats: Tensor, image_u8: Tensor, labels: Tensor, cfg: InferConfig) -> Tensor:
    """The scores the pseudo mask is the argmax of, after ``cfg.refine``."""
    if cfg.refine == "affinity":
        return affinity_refine(scores, feats, beta=cfg.rw_beta, log2_steps=cfg.rw_log2_steps)
    if cfg.refine == "crf":
        return crf_refine(scores, image_u8, labels)
    return scores


def crf_refine(scores: Tensor, image_u8: Tensor, labels: Tensor, iterations: int = 10) -> Tensor:
    """Dense-CRF marginals (K1, H, W) over background + present classes, with SIPE's ``crf_inference_label``
    pairwise terms (Gaussian sxy 3 / compat 3, bilateral sxy 50 / srgb 5 / compat 10) and a softmax-of-scores
    unary. Optional: needs ``pydensecrf`` (not a lowlabel dependency)."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    keep = torch.nonzero(torch.cat([labels.new_ones(1), labels]) > 0).flatten()
    sub = scores[keep].float()  # (P, H, W)
    probs = torch.softmax(sub * 10.0, dim=0).cpu().numpy()  # scores in [0, 1] -> peaked probabilities
    p, h, w = probs.shape
    crf = dcrf.DenseCRF2D(w, h, p)
    crf.setUnaryEnergy(unary_from_softmax(probs))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    rgb = np.ascontiguousarray(image_u8.permute(1, 2, 0).cpu().numpy().astype(np.uint8))
    crf.addPairwiseBilateral(sxy=50, srgb=5, rgbim=rgb, compat=10)
    q = torch.from_numpy(np.array(crf.inference(iterations), dtype=np.float32).reshape(p, h, w))
    out = torch.zeros_like(scores)
    out[keep] = q.to(scores.device)
    return out


def top_box(ids: np.ndarray, cls: int, score: np.ndarray) -> tuple[list[float], float] | None:
    """The box (0-based inclusive xyxy) of the largest connected region of class ``cls`` and its mean score."""
    import cv2

    binary = (ids == cls).astype(np.uint8)
    if binary.sum() == 0:
        return None
    n, comp, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[best, :4])
    return [float(x), float(y), float(x + w - 1), float(y + h - 1)], float(score[comp == best].mean())


def image_miou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> float:
    """mIoU of one image (classes absent from both prediction and GT are skipped), via the scoring suite."""
    from lowlabel.metrics.semseg import confusion_matrix, miou_from_confusion

    return miou_from_confusion(confusion_matrix(pred, gt, num_classes))


def evaluate_maps(score_fn: ScoreFn, data: WSSSData, split: str, out_dir: Path, cfg: InferConfig,
                  on_scored: Callable[[Tensor, np.ndarray, Tensor], None] | None = None) -> EvalResult:
    """Seeds (argmax of the scores), pseudo masks (refined), their mIoU on ``split`` and CorLoc of the top boxes.

    Writes ``seeds/<id>.png``, ``pseudo/<id>.png`` (VOC palette), ``per_image.csv`` (seed mIoU per image)
    and report samples of kind ``"segmentation"`` into ``out_dir``. Images without a GT mask still get PNGs
    (so evaluating ``train_aug`` produces the pseudo masks of the whole training set) but are not scored.
    ``on_scored(scores, gt, labels)`` is called for every image with a GT mask (``scores`` (K+1, H, W)).
    """
    from lowlabel.metrics.semseg import SegEvaluator

    ds = data.split(split)
    k1 = data.num_classes + 1
    names = ["background"] + data.class_names
    seed_eval, pseudo_eval = SegEvaluator(num_classes=k1), SegEvaluator(num_classes=k1)
    n = len(ds) if cfg.max_images <= 0 else min(cfg.max_images, len(ds))
    keeper = SampleKeeper(image_ids(ds, n), cfg.num_fixed_samples, cfg.num_worst_samples)
    per_image: dict[str, float] = {}
    boxes = CorLocAccumulator(data.class_names)
    for i in range(n):
        s = ds[i]
        r = _seed_and_pseudo(score_fn, s, f"{data.root} split {split}", cfg, out_dir)
        boxes.add(r["image_id"], r["pseudo"], r["refined"], r["labels"], s.get("boxes"), s.get("box_labels"))
        if s.get("mask") is None:
            continue
        gt = np.asarray(s["mask"], dtype=np.uint8).reshape(r["seed"].shape)
        seed_eval.update(r["seed"], gt)
        if on_scored is not None:
            on_scored(r["scores"], gt, r["labels"])
        pseudo_eval.update(r["pseudo"], gt)
        score = image_miou(r["seed"], gt, k1)
        per_image[r["image_id"]] = score
        keeper.offer(r["image_id"], score, {"image": r["image"], "gt": gt, "seed": r["seed"], "pseudo": r["pseudo"]})
    for image_id, payload in keeper.chosen():
        _save(out_dir, image_id, payload, names)
    write_per_image(out_dir, per_image)
    return _result(seed_eval.compute(), pseudo_eval.compute(), boxes.compute(), names, bool(per_image))


def _seed_and_pseudo(score_fn: ScoreFn, sample: dict[str, Any], where: str, cfg: InferConfig,
                     out_dir: Path) -> dict[str, Any]:
    """Scores, seed and pseudo mask of one dataset sample; writes their PNGs when ``cfg.write_pngs``."""
    image_id = str(sample["image_id"])
    labels = check_labels(sample["labels"], image_id, where)
    image_u8 = torch.as_tensor(sample["image"]).as_subclass(torch.Tensor)
    scores, feats = score_fn(normalize_image(image_u8), labels)
    seed = present_argmax(scores, labels).cpu().numpy().astype(np.uint8)
    refined = refine_scores(scores, feats, image_u8, labels, cfg)
    pseudo = present_argmax(refined, labels).cpu().numpy().astype(np.uint8)
    if cfg.write_pngs:
        save_palette_png(out_dir / "seeds" / f"{image_id}.png", seed)
        save_palette_png(out_dir / "pseudo" / f"{image_id}.png", pseudo)
    return {"image_id": image_id, "labels": labels, "seed": seed, "pseudo": pseudo, "refined": refined.cpu().numpy(),
            "scores": scores,
            "image": image_u8.permute(1, 2, 0).cpu().numpy().astype(np.uint8)}


def _per_class(names: list[str], values: Any) -> dict[str, float | None]:
    return {n: (None if v is None or not np.isfinite(v) else float(v)) for n, v in zip(names, values)}


def image_ids(ds: Any, n: int) -> list[str]:
    ids = getattr(ds, "image_ids", None)
    return [str(i) for i in ids[:n]] if ids is not None else [str(ds[i]["image_id"]) for i in range(n)]


def _save(out_dir: Path, image_id: str, payload: dict[str, Any], names: list[str]) -> None:
    save_sample(out_dir, image_id, "segmentation", payload["image"], gt=payload["gt"], seed=payload["seed"],
                pseudo=payload.get("pseudo"), class_names=np.asarray(names))


def _result(seed: dict[str, Any], pseudo: dict[str, Any], corloc: dict[str, Any], names: list[str],
            scored: bool) -> EvalResult:
    metrics: dict[str, float] = {}
    per_class: dict[str, dict[str, float | None]] = {}
    if corloc:
        metrics["CorLoc"] = float(corloc["CorLoc"])
        per_class["CorLoc"] = dict(corloc["per_class"])
    if scored:
        metrics["mIoU"] = float(seed["mIoU"])
        metrics["pseudo_mIoU"] = float(pseudo["mIoU"])
        per_class["IoU"] = _per_class(names, seed["IoU"])
        per_class["pseudo_IoU"] = _per_class(names, pseudo["IoU"])
    return EvalResult(metrics=metrics, per_class=per_class, monitor="mIoU" if scored else ("CorLoc" if corloc else ""))


class CorLocAccumulator:
    """Collects the top box per (image, present class) and the GT boxes, then scores CorLoc with the suite.

    The top box of a class is the bounding box of its largest connected region in the pseudo mask, scored by
    the mean refined score inside that region (one box per image and class, as PCL/OICR files hold).
    """

    def __init__(self, class_names: list[str]) -> None:
        self.names = class_names
        self.dets: dict[str, list[tuple[str, float, list[float]]]] = {}
        self.gts: dict[str, dict[str, np.ndarray]] = {}

    def add(self, image_id: str, ids: np.ndarray, scores: np.ndarray, labels: Tensor, gt_boxes: Any,
            gt_labels: Any) -> None:
        if gt_boxes is None or gt_labels is None or len(gt_labels) == 0:
            return
        boxes = np.asarray(torch.as_tensor(gt_boxes).as_subclass(torch.Tensor), dtype=np.float64).reshape(-1, 4)
        box_labels = np.asarray(gt_labels, dtype=np.int64).reshape(-1)
        for k in np.unique(box_labels).tolist():
            self.gts.setdefault(self.names[k], {})[image_id] = boxes[box_labels == k]
        for k in torch.nonzero(labels > 0).flatten().tolist():
            found = top_box(ids, k + 1, scores[k + 1])
            if found is not None:
                self.dets.setdefault(self.names[k], []).append((image_id, found[1], found[0]))

    def compute(self) -> dict[str, Any]:
        if not self.gts:
            return {}
        from lowlabel.metrics.corloc import corloc

        return corloc(self.dets, self.gts)


class MultiLabelCAMInference(nn.Module):
    """A multi-label CAM network for export: ``images`` (B, 3, H, W) normalised -> ``logits`` (B, K) (the GAP of the
    CAM, as training scores them) and ``cams`` (B, K, h, w) = relu(CAM), the maps the seeds are made of."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        cam = self.model(images).cam  # (B, K, h, w)
        return cam.mean(dim=(2, 3)), F.relu(cam)


def export_net(module: nn.Module, model: nn.Module, *, inputs: dict[str, Tensor], outputs: dict[str, str],
               class_names: list[str]) -> ExportNet:
    """An :class:`ExportNet` of a WSSS network ``model`` wrapped in ``module``: ``inputs`` (a dynamic batch axis 0;
    ``images`` also dynamic height and width) and ``outputs`` (name -> meaning, "h, w" = the feature map's size), in
    the given order."""
    axes = {name: {0: "batch"} for name in inputs}
    axes["images"] = {0: "batch", 2: "height", 3: "width"}
    stride = getattr(model.backbone, "feature_stride", None)
    notes = {k: v.replace("h, w", f"H/{stride}, W/{stride}") if stride else v for k, v in outputs.items()}
    return ExportNet(module=module.eval(), example_inputs=tuple(inputs.values()), input_names=list(inputs),
                     output_names=list(outputs), dynamic_axes=axes, outputs=notes, class_names=list(class_names))


def segment(model: nn.Module, score_fn: ScoreFn, images: Sequence[Tensor], cfg: InferConfig) -> list[Segmentation]:
    """``predict_batch`` of the CAM-based WSSS methods: seeds and (refined) pseudo masks of uint8 ``(3, H, W)``
    images. Without image labels, an image's classes are the ones the classifier scores above 0.5 (at least the
    top one)."""
    out = []
    for image_u8 in images:
        image_u8 = torch.as_tensor(image_u8)
        image = normalize_image(image_u8)
        logits = model(image[None]).cam.mean(dim=(2, 3))[0]  # (K,)
        labels = (logits.sigmoid() > 0.5).float()
        if labels.sum() == 0:
            labels[logits.argmax()] = 1.0
        scores, feats = score_fn(image, labels)
        seed = present_argmax(scores, labels).to(torch.uint8).cpu()
        refined = refine_scores(scores, feats, image_u8, labels, cfg)
        out.append(Segmentation(mask=present_argmax(refined, labels).to(torch.uint8).cpu(), seed=seed,
                                labels=labels.cpu()))
    return out


def write_segmentation(out: Path, source: Path, name: str, image: np.ndarray, pred: Segmentation, *,
                       mask_dir: str = "pseudo") -> None:
    """VOC palette PNGs ``<mask_dir>/<name>.png`` (the mask) and ``seeds/<name>.png`` (when there are seeds), and
    overlays ``overlays/<name>_{<mask_dir>,seed}.png`` on the image."""
    palette = np.asarray(voc_palette(), dtype=np.uint8).reshape(-1, 3)
    rgb = image.astype(np.float32)
    kinds = [(mask_dir, mask_dir, pred.mask)] + ([("seeds", "seed", pred.seed)] if pred.seed is not None else [])
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    for folder, kind, ids_t in kinds:
        ids = ids_t.numpy()
        save_palette_png(out / folder / f"{name}.png", ids)
        blend = np.where(ids[..., None] > 0, 0.5 * rgb + 0.5 * palette[ids], rgb)
        Image.fromarray(blend.astype(np.uint8)).save(out / "overlays" / f"{name}_{kind}.png")
