"""Score whole prediction folders in the official formats (the library side of ``lowlabel score``).

Each ``score_*`` function reads files with :mod:`lowlabel.metrics.files`, feeds the streaming evaluators and returns
the result dict whose keys DESIGN.md section 4 fixes (values in percent). Problems raise
:class:`~lowlabel.errors.UserError` naming the file.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lowlabel.errors import UserError
from lowlabel.metrics import coco, corloc, davis, files, semseg, voc_ap, wsol
from lowlabel.structures import IGNORE_INDEX

if TYPE_CHECKING:
    from lowlabel.data.wsol import WSOLMetadata


def score_wsol(
    metadata: str | Path,
    scoremaps: str | Path,
    *,
    mask_root: str | Path | None = None,
    predictions: str | Path | None = None,
    cam_curve_interval: float = 0.01,
    iou_thresholds: Sequence[int] = (30, 50, 70),
    resize_length: int = 224,
) -> dict[str, float]:
    """WSOL metrics of ``<scoremaps>/<image_id>.npy`` against a wsolevaluation split folder.

    Box metadata gives ``MaxBoxAccV2``, ``MaxBoxAccV2@t``, ``GT-known Loc`` (and ``Top-1 Loc``/``Top-1 Cls`` with
    ``predictions``); mask metadata gives ``PxAP``. Score maps and prediction lines of images that are not in the
    metadata are ignored, as wsolevaluation ignores extra score maps; one warning line on stderr says how many.
    """
    from lowlabel.data.wsol import read_wsol_metadata  # the one wsolevaluation reader (imports torchvision: lazily)

    meta = read_wsol_metadata(metadata, require_localization=True)
    preds = files.read_class_csv(predictions) if predictions else None
    side = (resize_length, resize_length)
    paths = {image_id: files.scoremap_path(scoremaps, image_id) for image_id in meta.image_ids}
    if meta.has_masks:
        if mask_root is None:
            raise UserError(f"{metadata}: localization.txt names masks; give --mask-root")
        mask_ev = wsol.MaskEvaluator(cam_curve_interval=cam_curve_interval)
        for image_id in meta.image_ids:
            cam = _load_scoremap(paths[image_id], side)
            fg, ignore = _load_masks(Path(mask_root), meta, image_id, side)
            mask_ev.update(cam, fg, ignore)
        try:
            result = mask_ev.compute()
        except ValueError as err:
            raise UserError(f"{metadata}: {err}") from None
        _warn_extra_scoremaps(Path(scoremaps), paths.values())  # warnings only once the score stands
        return result
    box_ev = wsol.BoxEvaluator(
        cam_curve_interval=cam_curve_interval,
        iou_thresholds=tuple(iou_thresholds),
        resize_length=resize_length,
        keep_per_image=False,
    )
    for image_id in meta.image_ids:
        cam = _load_scoremap(paths[image_id], side)
        pred = gt = None
        if preds is not None:
            if image_id not in preds:
                raise UserError(f"{predictions}: no predicted class for image {image_id!r}")
            pred, gt = preds[image_id], meta.labels[image_id]
        box_ev.update(cam, meta.boxes[image_id], meta.sizes[image_id], pred_class=pred, gt_class=gt)
    out = box_ev.compute()
    keys = ["MaxBoxAccV2", *[f"MaxBoxAccV2@{t}" for t in box_ev.iou_thresholds], "GT-known Loc"]
    keys += [k for k in ("Top-1 Loc", "Top-1 Cls") if k in out]
    keys += ["MaxBoxAccV1", *[f"MaxBoxAccV1@{t}" for t in box_ev.iou_thresholds]]
    _warn_extra_scoremaps(Path(scoremaps), paths.values())
    if preds is not None:
        _warn_extra_predictions(Path(str(predictions)), preds, set(meta.image_ids))
    return {k: out[k] for k in keys}


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def _warn_extra_scoremaps(root: Path, used: Iterable[Path]) -> None:
    """One warning for the ``.npy`` files under ``root`` that no metadata image id names."""
    taken = {p.resolve() for p in used}
    extra = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.npy") if p.resolve() not in taken)
    if extra:
        what = "score map in {} is" if len(extra) == 1 else "score maps in {} are"
        _warn(
            f"{len(extra)} {what.format(root)} not in the metadata (first: {extra[0]}); ignored, as wsolevaluation does"
        )


def _warn_extra_predictions(path: Path, preds: dict[str, int], known: set[str]) -> None:
    """One warning for the image ids of the predictions CSV that are not in the metadata."""
    extra = [image_id for image_id in preds if image_id not in known]  # file order
    if extra:
        what = "prediction in {} is" if len(extra) == 1 else "predictions in {} are"
        _warn(f"{len(extra)} {what.format(path)} for images not in the metadata (first: {extra[0]}); ignored")


def _load_scoremap(path: Path, shape: tuple[int, int]) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read score map ({err})") from None
    try:
        return wsol.check_scoremap(arr, shape, where=str(path))
    except ValueError as err:
        raise UserError(str(err)) from None


def _load_masks(root: Path, meta: WSOLMetadata, image_id: str, side: tuple[int, int]) -> tuple[Any, Any]:
    instances = np.stack([files.read_mask_image(root / m, side) for m in meta.masks[image_id]])
    ignore = files.read_mask_image(root / meta.ignore[image_id], side) if image_id in meta.ignore else None
    return wsol.combine_masks(instances, ignore)


def score_semseg(gt_dir: str | Path, pred_dir: str | Path, ids: str | Path, num_classes: int = 21) -> dict[str, Any]:
    """``{"mIoU", "IoU"}`` (percent; None for a class in neither GT nor prediction) over the ids in ``ids``."""
    ev = semseg.SegEvaluator(num_classes)
    id_list = [line for _, line in files._lines(Path(ids))]
    if not id_list:
        raise UserError(f"{ids}: no image id")
    for image_id in id_list:
        gt_path, pred_path = Path(gt_dir) / f"{image_id}.png", Path(pred_dir) / f"{image_id}.png"
        gt = files.read_label_png(gt_path)
        pred = files.read_label_png(pred_path)
        if gt.shape != pred.shape:
            raise UserError(f"{pred_path}: size {pred.shape[::-1]} differs from its GT {gt.shape[::-1]} ({gt_path})")
        _check_class_ids(pred, pred_path, num_classes)
        ev.update(pred, gt)
    return ev.compute()


def _check_class_ids(pred: np.ndarray, path: Path, num_classes: int) -> None:
    """Refuse predicted ids in ``[num_classes, 255)``. chainercv's ``K x K`` crop (kept by
    :func:`lowlabel.metrics.semseg.confusion_matrix`) would drop those pixels from the score without a word, and
    such ids almost always mean a palette or offset mistake; a predicted 255 still drops out, as in chainercv."""
    ids = np.unique(pred)
    bad = ids[(ids >= num_classes) & (ids != IGNORE_INDEX)]
    if bad.size:
        more = f"; {bad.size} such ids, up to {int(bad[-1])}" if bad.size > 1 else ""
        raise UserError(
            f"{path}: predicted class id {int(bad[0])} >= --num-classes {num_classes} ({IGNORE_INDEX} is ignore){more}"
        )


def score_davis(
    davis_root: str | Path, results: str | Path, image_set: str = "val", resolution: str = "480p"
) -> davis.DavisEvaluator:
    """Evaluate a DAVIS-2017 result folder; returns the evaluator (``compute()``, per-object values, CSV text)."""
    sequences = files.davis_frames(davis_root, image_set, resolution)
    for seq, gt_frames in sequences.items():  # check every sequence first: name all missing frames up front
        files.davis_result_paths(results, seq, gt_frames)
    ev = davis.DavisEvaluator()
    for seq, gt_frames in sequences.items():
        gt = np.stack([files.read_label_png(p) for p in gt_frames])
        paths = files.davis_result_paths(results, seq, gt_frames)
        preds = [files.read_label_png(p) for p in paths]
        for p, arr in zip(paths, preds):
            if arr.shape != gt.shape[1:]:
                raise UserError(f"{p}: size {arr.shape[::-1]} differs from the GT frames {gt.shape[1:][::-1]}")
        try:
            ev.update(seq, gt, np.stack(preds))
        except ValueError as err:
            raise UserError(f"{Path(results) / seq}: {err}") from None
    return ev


def score_coco(gt: str | Path, detections: str | Path, split: str | Path | None = None) -> dict[str, Any]:
    """``{<subset>: {AP, AP50, AP75, APs, APm, APl}, "per_class": {name: {AP, AP50}}}`` (percent)."""
    gt_dict = files.read_json(gt)
    dets = files.read_json(detections)
    if isinstance(dets, dict) and "annotations" in dets:
        dets = dets["annotations"]
    if not isinstance(dets, list):
        raise UserError(f"{detections}: expected a JSON list of detections")
    splits = None
    if split is not None:
        raw = files.read_json(split)
        if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
            raise UserError(f'{split}: expected {{"all": [...], "novel": [...], "base": [...]}} of category ids')
        splits = {str(k): [int(c) for c in v] for k, v in raw.items()}
    try:
        coco_gt = coco.load_gt(gt_dict)
        out = coco.coco_box_ap(coco_gt, dets, splits)
    except ValueError as err:
        raise UserError(f"{detections if 'entry' in str(err) else gt}: {err}") from None
    names = {c["id"]: c.get("name", str(c["id"])) for c in gt_dict["categories"]}
    out["per_class"] = {names[c]: v for c, v in out["per_class"].items()}
    return out


def _voc_gt(voc_root: str | Path, image_set: str) -> tuple[list[str], dict[str, list[dict[str, Any]]], list[str]]:
    ids, objects = files.read_voc_set(voc_root, image_set)
    classes = files.class_order({o["name"] for objs in objects.values() for o in objs})
    return ids, objects, classes


def _class_files(folder: str | Path, classes: list[str], known: set[str]) -> dict[str, list[Any]]:
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"detections folder not found: {root}")
    dets = {}
    for path in sorted(root.glob("*.txt")):
        # <class>.txt, or the devkit's comp4_det_test_<class>.txt
        name = next((c for c in classes if path.stem == c or path.stem.endswith(f"_{c}")), path.stem)
        if name not in classes:
            raise UserError(f"{path}: unknown class {name!r} (classes in the GT: {', '.join(classes)})")
        dets[name] = files.read_det_txt(path, known)
    return dets


def score_corloc(voc_root: str | Path, detections: str | Path, image_set: str = "trainval") -> dict[str, Any]:
    """``{"CorLoc", "per_class"}`` (percent) from ``<detections>/<class>.txt`` files."""
    ids, objects, classes = _voc_gt(voc_root, image_set)
    dets = _class_files(detections, classes, set(ids))
    gt = {c: {i: [o["bbox"] for o in objects[i] if o["name"] == c] for i in ids} for c in classes}
    return corloc.corloc(dets, gt)


def score_voc_ap(
    detections: str | Path,
    *,
    voc_root: str | Path | None = None,
    gt: str | Path | None = None,
    image_set: str = "test",
    use_07_metric: bool = False,
    iou_thresh: float = 0.5,
) -> dict[str, Any]:
    """``{"mAP", "AP", "use_07_metric", "iou_thresh"}`` from VOC XML + class files, or COCO JSON GT + results."""
    if (voc_root is None) == (gt is None):
        raise UserError("give exactly one of --voc-root (VOC XML) and --gt (COCO JSON)")
    if voc_root is not None:
        ids, objects, classes = _voc_gt(voc_root, image_set)
        dets = _class_files(detections, classes, set(ids))
        ev = voc_ap.VOCAPEvaluator(class_names=classes, iou_thresh=iou_thresh, use_07_metric=use_07_metric)
        index = {c: k for k, c in enumerate(classes)}
        by_image: dict[str, list[tuple[list[float], float, int]]] = {i: [] for i in ids}
        for name, entries in dets.items():
            for image_id, score, box in entries:
                by_image[image_id].append((box, score, index[name]))
        for image_id in ids:
            objs, own = objects[image_id], by_image[image_id]
            ev.update(
                image_id,
                [d[0] for d in own],
                [d[1] for d in own],
                [d[2] for d in own],
                [o["bbox"] for o in objs],
                [index[o["name"]] for o in objs],
                [o["difficult"] for o in objs],
            )
        return ev.compute()
    return _voc_ap_from_coco(gt, detections, use_07_metric, iou_thresh)  # type: ignore[arg-type]


def _inclusive(bbox: Sequence[float]) -> list[float]:
    """COCO ``[x, y, w, h]`` -> 1-based inclusive ``[x + 1, y + 1, x + w, y + h]`` (detectron2's VOC convention)."""
    x, y, w, h = (float(v) for v in bbox)
    if w < 0 or h < 0:
        raise ValueError(f"bbox {list(bbox)} has x1 < x0 or y1 < y0")
    return [x + 1, y + 1, x + w, y + h]


def _voc_ap_from_coco(gt: str | Path, detections: str | Path, use_07: bool, iou_thresh: float) -> dict[str, Any]:
    gt_dict = files.read_json(gt)
    dets = files.read_json(detections)
    if not isinstance(dets, list):
        raise UserError(f"{detections}: expected a JSON list of detections")
    cats = gt_dict.get("categories", [])
    index = {c["id"]: k for k, c in enumerate(cats)}
    ev = voc_ap.VOCAPEvaluator(class_names=[c["name"] for c in cats], iou_thresh=iou_thresh, use_07_metric=use_07)
    per_image: dict[Any, dict[str, list[Any]]] = {im["id"]: {"gt": [], "det": []} for im in gt_dict.get("images", [])}
    for n, a in enumerate(gt_dict.get("annotations", [])):
        if a["category_id"] not in index or a["image_id"] not in per_image:
            raise UserError(f"{gt}: annotation {n} has an unknown category or image id")
        try:
            per_image[a["image_id"]]["gt"].append((_inclusive(a["bbox"]), index[a["category_id"]], a))
        except ValueError as err:
            raise UserError(f"{gt}: annotation {n}: {err}") from None
    for n, d in enumerate(dets):
        if d.get("category_id") not in index:
            raise UserError(f"{detections}: entry {n} has unknown category id {d.get('category_id')}")
        if d.get("image_id") not in per_image:
            raise UserError(f"{detections}: entry {n} has unknown image id {d.get('image_id')}")
        try:
            per_image[d["image_id"]]["det"].append((_inclusive(d["bbox"]), float(d["score"]), index[d["category_id"]]))
        except (ValueError, KeyError) as err:
            raise UserError(f"{detections}: entry {n}: {err}") from None
    for image_id, entry in per_image.items():
        g, dt = entry["gt"], entry["det"]
        difficult = [bool(a.get("iscrowd", 0) or a.get("ignore", 0)) for _, _, a in g]
        ev.update(str(image_id), [d[0] for d in dt], [d[1] for d in dt], [d[2] for d in dt],
                  [x[0] for x in g], [x[1] for x in g], difficult)  # fmt: skip
    return ev.compute()
