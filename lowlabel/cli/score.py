"""``lowlabel score wsol|semseg|davis|coco|corloc|voc-ap``: score prediction files in the official formats.

Formats and output keys: DESIGN.md section 4. Every value is in percent, except the DAVIS CSV files, which keep
the official fractions with 3 decimals. ``--json OUT`` writes the numbers (NaN as null).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lowlabel.errors import UserError


def add_parser(subcommands: Any) -> None:
    """Register the ``score`` command group."""
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(description="Score prediction files in the official formats (DESIGN.md section 4).")
    subcommands.add_subcommand("score", parser, help="score predictions in official formats")
    sub = parser.add_subcommands(dest="task")

    def new(name: str, description: str) -> Any:
        p = ArgumentParser(description=description)
        sub.add_subcommand(name, p, help=description)
        p.add_argument("--json", type=str, default=None, help="also write the numbers to this JSON file")
        return p

    p = new("wsol", "WSOL: MaxBoxAccV2, GT-known/Top-1 Loc, Top-1 Cls (boxes) or PxAP (masks), wsolevaluation rules")
    p.add_argument("--metadata", type=str, required=True, help="split folder: image_ids/class_labels/... .txt")
    p.add_argument("--scoremaps", type=str, required=True, help="folder of <image_id>.npy score maps (224x224)")
    p.add_argument("--mask-root", type=str, default=None, help="root of the mask paths in localization.txt")
    p.add_argument("--predictions", type=str, default=None, help="CSV 'image_id,class' for Top-1 Loc/Cls")
    p.add_argument("--cam-curve-interval", type=float, default=0.01, help="CAM thresholds np.arange(0, 1, step)")
    p.add_argument("--iou-thresholds", type=int, nargs="+", default=[30, 50, 70], help="IoU thresholds (%%)")
    p.add_argument("--resize-length", type=int, default=224, help="score-map side; GT boxes are rescaled to it")

    p = new("semseg", "Semantic segmentation mIoU over a set (chainercv/SIPE semantics)")
    p.add_argument("--gt-dir", type=str, required=True, help="GT PNGs <id>.png (class index, 255 = ignore)")
    p.add_argument("--pred-dir", type=str, required=True, help="predicted 8-bit PNGs <id>.png")
    p.add_argument("--ids", type=str, required=True, help="text file with one image id per line")
    p.add_argument("--num-classes", type=int, default=21, help="K including background")

    p = new("davis", "DAVIS-2017 semi-supervised J&F; writes the two official CSV files into --results")
    p.add_argument("--davis-root", type=str, required=True, help="DAVIS folder (Annotations/, ImageSets/)")
    p.add_argument("--results", type=str, required=True, help="folder <seq>/<frame>.png of indexed PNGs")
    p.add_argument("--set", type=str, default="val", help="image set in ImageSets/2017/")
    p.add_argument("--resolution", type=str, default="480p", help="Annotations/<resolution>/")

    p = new("coco", "COCO box AP (faster-coco-eval) per category subset, with a per-class table")
    p.add_argument("--gt", type=str, required=True, help="COCO instances JSON")
    p.add_argument("--detections", type=str, required=True, help="COCO results JSON (list of detections)")
    p.add_argument("--split", type=str, default=None, help='JSON {"all": [...], "novel": [...], "base": [...]}')

    p = new("corloc", "CorLoc (OICR/PCL dis_eval) from per-class detection files")
    p.add_argument("--voc-root", type=str, required=True, help="VOC folder (Annotations/, ImageSets/Main/)")
    p.add_argument("--detections", type=str, required=True, help="folder of <class>.txt files")
    p.add_argument("--set", type=str, default="trainval", help="image set in ImageSets/Main/")

    p = new("voc-ap", "VOC-style detection AP@0.5 (07 11-point or all-point), VOC XML or COCO JSON ground truth")
    p.add_argument("--voc-root", type=str, default=None, help="VOC folder; detections = folder of <class>.txt")
    p.add_argument("--gt", type=str, default=None, help="or: COCO instances JSON; detections = COCO results JSON")
    p.add_argument("--detections", type=str, required=True, help="folder of <class>.txt, or a COCO results JSON")
    p.add_argument("--set", type=str, default="test", help="image set in ImageSets/Main/ (with --voc-root)")
    p.add_argument("--use-07-metric", type=bool, default=False, help="VOC2007 11-point AP instead of all-point")
    p.add_argument("--iou-thresh", type=float, default=0.5, help="a hit needs IoU > this")


def run(cfg: Any) -> int:
    task = cfg.task
    sub = cfg[task]
    results, tables = TASKS[task](sub)
    print_tables(tables)
    if task == "davis":
        print(f"wrote global_results-{sub.set}.csv and per-sequence_results-{sub.set}.csv in {sub.results}")
    if sub.json:
        write_json(sub.json, results)
    return 0


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf -> None, numpy scalars -> Python, dict keys -> str."""
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, results: Mapping[str, Any]) -> None:
    out = Path(path)
    if out.parent and not out.parent.exists():
        raise UserError(f"folder of --json does not exist: {out.parent}")
    out.write_text(json.dumps(clean(results), indent=2) + "\n", encoding="utf-8")


def print_tables(tables: list[tuple[str, list[str], list[list[Any]]]]) -> None:
    """Print ``(title, header, rows)`` tables with rich; floats with 2 decimals, None/NaN as '-'."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    for title, header, rows in tables:
        table = Table(title=title)
        for i, name in enumerate(header):
            table.add_column(name, justify="left" if i == 0 else "right")
        for row in rows:
            table.add_row(*(_fmt(v) for v in row))
        console.print(table)


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float | np.floating):
        return f"{value:.2f}"
    return str(value)


Tables = list[tuple[str, list[str], list[list[Any]]]]


def _wsol(cfg: Any) -> tuple[dict[str, Any], Tables]:
    from lowlabel.metrics.scoring import score_wsol

    res = score_wsol(
        cfg.metadata,
        cfg.scoremaps,
        mask_root=cfg.mask_root,
        predictions=cfg.predictions,
        cam_curve_interval=cfg.cam_curve_interval,
        iou_thresholds=cfg.iou_thresholds,
        resize_length=cfg.resize_length,
    )
    return res, [(f"WSOL ({cfg.metadata})", ["metric", "%"], [[k, v] for k, v in res.items()])]


def _semseg(cfg: Any) -> tuple[dict[str, Any], Tables]:
    from lowlabel.metrics.scoring import score_semseg

    res = score_semseg(cfg.gt_dir, cfg.pred_dir, cfg.ids, cfg.num_classes)
    rows = [[str(c), v] for c, v in enumerate(res["IoU"])]
    return res, [
        ("Segmentation", ["metric", "%"], [["mIoU", res["mIoU"]]]),
        ("IoU per class", ["class", "IoU %"], rows),
    ]


def _davis(cfg: Any) -> tuple[dict[str, Any], Tables]:
    from lowlabel.metrics.davis import GLOBAL_KEYS
    from lowlabel.metrics.scoring import score_davis

    ev = score_davis(cfg.davis_root, cfg.results, cfg.set, cfg.resolution)
    res = {k: v * 100 for k, v in ev.compute().items()}
    out = Path(cfg.results)
    (out / f"global_results-{cfg.set}.csv").write_text(ev.global_csv(), encoding="utf-8")
    (out / f"per-sequence_results-{cfg.set}.csv").write_text(ev.per_sequence_csv(), encoding="utf-8")
    rows = [[name, o["J-Mean"] * 100, o["F-Mean"] * 100] for name, o in ev.per_object.items()]
    return res, [
        (f"DAVIS-2017 {cfg.set}", ["metric", "%"], [[k, res[k]] for k in GLOBAL_KEYS]),
        ("per object", ["sequence_object", "J-Mean %", "F-Mean %"], rows),
    ]


def _coco(cfg: Any) -> tuple[dict[str, Any], Tables]:
    from lowlabel.metrics.coco import SUMMARY_KEYS
    from lowlabel.metrics.scoring import score_coco

    res = score_coco(cfg.gt, cfg.detections, cfg.split)
    subsets = [k for k in res if k != "per_class"]
    summary = [[k, *[res[k][m] for m in SUMMARY_KEYS]] for k in subsets]
    per_class = [[name, v["AP"], v["AP50"]] for name, v in res["per_class"].items()]
    return res, [
        ("COCO box AP", ["subset", *[f"{m} %" for m in SUMMARY_KEYS]], summary),
        ("per class", ["class", "AP %", "AP50 %"], per_class),
    ]


def _corloc(cfg: Any) -> tuple[dict[str, Any], Tables]:
    from lowlabel.metrics.scoring import score_corloc

    res = score_corloc(cfg.voc_root, cfg.detections, cfg.set)
    rows = [[c, v] for c, v in res["per_class"].items()]
    return res, [("CorLoc", ["metric", "%"], [["CorLoc", res["CorLoc"]]]), ("per class", ["class", "CorLoc %"], rows)]


def _voc_ap(cfg: Any) -> tuple[dict[str, Any], Tables]:
    from lowlabel.metrics.scoring import score_voc_ap

    res = score_voc_ap(
        cfg.detections,
        voc_root=cfg.voc_root,
        gt=cfg.gt,
        image_set=cfg.set,
        use_07_metric=cfg.use_07_metric,
        iou_thresh=cfg.iou_thresh,
    )
    variant = "VOC07 11-point" if res["use_07_metric"] else "all-point"
    rows = [[c, v] for c, v in res["AP"].items()]
    return res, [
        (f"VOC AP@{res['iou_thresh']} ({variant})", ["metric", "%"], [["mAP", res["mAP"]]]),
        ("per class", ["class", "AP %"], rows),
    ]


TASKS = {"wsol": _wsol, "semseg": _semseg, "davis": _davis, "coco": _coco, "corloc": _corloc, "voc-ap": _voc_ap}
