"""Speed and memory of the scorers against straightforward per-image, per-threshold references.

Usage::

    .venv/bin/python benchmarks/score.py                 # all three, sizes as recorded in benchmarks/README.md
    .venv/bin/python benchmarks/score.py --only wsol --wsol-images 200 --wsol-ref-images 50   # quicker

Each implementation runs in its own spawned process (one thread), fed by the same seeded synthetic data generated on
the fly. Time is the process CPU time of the scorer calls only (the machine is shared, so wall time mostly measures
other jobs); memory is the process's peak RSS above its RSS before the loop. The numbers of the fast and the
reference implementation are asserted identical on the images both scored.

* WSOL: CAMs built like wsolevaluation's (28x28 maps of a few Gaussian blobs plus noise, cubic-upsampled to 224,
  min-max normalised), 1-3 GT boxes in images of 300-500 px. References: the wsolevaluation loop (one
  ``cv2.threshold`` + ``findContours`` per CAM threshold), (a) run twice as wsolevaluation needs for V1 and V2
  numbers, and (b) once with V1 and V2 from the same contours (a stronger baseline); also lowlabel's previous
  box extraction (``findContours`` once per distinct level, ``wsol.contour_level_boxes``). The speed-ups are
  timed in one process that runs all four on each image in turn, so load changes on a shared machine affect all
  alike; lowlabel's 5,000-image run and the reference loop's memory are separate processes. The one-time numba
  load (or first compile) of the component-tree code is printed, not counted.
* DAVIS: sequences of moving ellipses (2-3 objects, 480x854); the prediction is a perturbed copy. Reference: full-frame
  J and F per object and frame with ``seg2bmap`` and scikit-image dilation (the DAVIS-2016 toolkit's way).
* COCO: faster-coco-eval (``lowlabel.metrics.coco``) against pycocotools on random boxes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def clock() -> float:
    """Process CPU time: on a machine shared with other jobs, wall time mostly measures the other jobs."""
    return time.process_time()


def _measure(fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args) -> (cpu_seconds, result)``; add wall time and the peak RSS above the starting RSS."""
    import cv2

    cv2.setNumThreads(1)
    base = _rss_mb()
    wall = time.perf_counter()
    seconds, result = fn(*args)
    wall = time.perf_counter() - wall
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB on Linux
    return {"seconds": seconds, "wall_with_data_generation": wall, "peak_mb": max(peak - base, 0.0), "result": result}


def in_process(fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(_measure, (fn, *args))


# ---------------------------------------------------------------- WSOL


def synth_wsol(i: int) -> tuple[np.ndarray, list[list[float]], tuple[int, int]]:
    """One CAM (224x224 in [0, 1]), its GT boxes in original pixels and the original (W, H)."""
    import cv2

    from lowlabel.metrics.wsol import normalize_scoremap

    rng = np.random.default_rng(i)
    side = 28
    yy, xx = np.mgrid[0:side, 0:side]
    cam = rng.normal(0, 0.05, (side, side))
    w, h = int(rng.integers(300, 500)), int(rng.integers(300, 500))
    boxes = []
    for k in range(int(rng.integers(1, 4))):
        cy, cx = rng.uniform(4, side - 4, 2)
        sy, sx = rng.uniform(1.5, 6, 2)
        cam += rng.uniform(0.3, 1.0) * np.exp(-((yy - cy) ** 2) / (2 * sy**2) - (xx - cx) ** 2 / (2 * sx**2))
        if k == 0 or rng.random() < 0.5:
            fx, fy = w / side, h / side
            x0, x1 = max(cx - 2.2 * sx, 0) * fx, min(cx + 2.2 * sx, side - 1) * fx
            y0, y1 = max(cy - 2.2 * sy, 0) * fy, min(cy + 2.2 * sy, side - 1) * fy
            boxes.append([x0, y0, x1, y1])
    up = cv2.resize(cam.astype(np.float32), (224, 224), interpolation=cv2.INTER_CUBIC)
    return normalize_scoremap(up), boxes, (w, h)


def _warm_up() -> None:
    """Load (or compile) the numba box extraction once, outside the timed loops."""
    from lowlabel.metrics.wsol import BoxEvaluator

    warm = clock()
    BoxEvaluator(cam_curve_interval=0.5, resize_length=8).update(np.eye(8, dtype=np.float32), [[0, 0, 1, 1]], (8, 8))
    print(f"  (one-time numba load/compile of the box extraction: {clock() - warm:.2f} s CPU, not counted)")


def wsol_fast(n: int, interval: float) -> tuple[float, dict[str, float]]:
    from lowlabel.metrics.wsol import BoxEvaluator

    _warm_up()
    ev = BoxEvaluator(cam_curve_interval=interval)
    total = 0.0
    for i in range(n):
        cam, boxes, size = synth_wsol(i)
        t0 = clock()
        ev.update(cam, boxes, size)
        total += clock() - t0
    t0 = clock()
    out = ev.compute()
    return total + clock() - t0, out


def _ref_boxes(scoremap: np.ndarray, thresholds: np.ndarray, versions: tuple[str, ...]) -> dict[str, list[np.ndarray]]:
    """wsolevaluation's per-threshold loop; with both versions, V1 and V2 share each threshold's contours."""
    import cv2

    height, width = scoremap.shape
    img = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    out: dict[str, list[np.ndarray]] = {v: [] for v in versions}
    for t in thresholds:
        _, binary = cv2.threshold(img, int(t * np.max(img)), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        for v in versions:
            if len(contours) == 0:
                out[v].append(np.asarray([[0, 0, 0, 0]]))
                continue
            chosen = contours if v == "V2" else [max(contours, key=cv2.contourArea)]
            boxes = []
            for c in chosen:
                x, y, w, h = cv2.boundingRect(c)
                boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
            out[v].append(np.asarray(boxes))
    return out


IOU_THRESHOLDS = (30, 50, 70)


def _ref_update(cam: np.ndarray, boxes: list, size: tuple[int, int], thresholds: np.ndarray,
                hits: dict[str, np.ndarray], shared: bool) -> None:
    """Score one image the reference way (``shared``: V1 and V2 from the same contours) into ``hits``."""
    from lowlabel.metrics.wsol import box_iou_inclusive, resize_boxes

    gt = resize_boxes(boxes, size)
    passes = [("V1", "V2")] if shared else [("V1",), ("V2",)]
    for versions in passes:
        for v, boxes_at in _ref_boxes(cam, thresholds, versions).items():
            iou = box_iou_inclusive(np.concatenate(boxes_at), gt).max(axis=1)
            idx, best = 0, []
            for nb in (len(b) for b in boxes_at):
                best.append(max(iou[idx : idx + nb]))
                idx += nb
            for k, thr in enumerate(IOU_THRESHOLDS):
                hits[v][k, np.where(np.asarray(best) >= thr / 100)[0]] += 1


def _empty_hits(n_thresholds: int) -> dict[str, np.ndarray]:
    return {v: np.zeros((len(IOU_THRESHOLDS), n_thresholds)) for v in ("V1", "V2")}


def _ref_result(hits: dict[str, np.ndarray], n: int) -> dict[str, float]:
    out = {}
    for v in ("V2", "V1"):
        best = (hits[v] * 100 / n).max(axis=1)
        out[f"MaxBoxAcc{v}"] = float(best.mean())
        out.update({f"MaxBoxAcc{v}@{t}": float(b) for t, b in zip(IOU_THRESHOLDS, best)})
    return out


def wsol_reference(n: int, interval: float, shared: bool) -> tuple[float, dict[str, float]]:
    thresholds = np.arange(0, 1, interval)
    hits = _empty_hits(len(thresholds))
    total = 0.0
    for i in range(n):
        cam, boxes, size = synth_wsol(i)
        t0 = clock()
        _ref_update(cam, boxes, size, thresholds, hits, shared)
        total += clock() - t0
    return total, _ref_result(hits, n)


def wsol_interleaved(n: int, interval: float) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """CPU seconds of each implementation on the same images, taken in turn image by image, so that load changes
    on a shared machine hit all of them alike (the speed-up ratios come from here)."""
    from lowlabel.metrics import wsol
    from lowlabel.metrics.wsol import BoxEvaluator

    tree_path, contour_path = wsol.level_boxes, wsol.contour_level_boxes
    _warm_up()
    thresholds = np.arange(0, 1, interval)
    evaluators = {"lowlabel": BoxEvaluator(cam_curve_interval=interval),
                  "lowlabel_contour_path": BoxEvaluator(cam_curve_interval=interval)}  # fmt: skip
    hits = {name: _empty_hits(len(thresholds)) for name in ("reference_two_passes", "reference_shared_contours")}
    seconds = dict.fromkeys([*evaluators, *hits], 0.0)
    for i in range(n):
        cam, boxes, size = synth_wsol(i)
        for name, path in (("lowlabel", tree_path), ("lowlabel_contour_path", contour_path)):
            wsol.level_boxes = path
            t0 = clock()
            evaluators[name].update(cam, boxes, size)
            seconds[name] += clock() - t0
        for name in hits:
            t0 = clock()
            _ref_update(cam, boxes, size, thresholds, hits[name], shared=name == "reference_shared_contours")
            seconds[name] += clock() - t0
    wsol.level_boxes = tree_path
    results = {name: ev.compute() for name, ev in evaluators.items()}
    results.update({name: _ref_result(h, n) for name, h in hits.items()})
    return seconds, results


def bench_wsol(n: int, n_ref: int, interval: float) -> dict[str, Any]:
    fast_all = in_process(wsol_fast, n, interval)
    ref_two = in_process(wsol_reference, n_ref, interval, False)  # for its memory
    interleaved = in_process(wsol_interleaved, n_ref, interval)
    seconds, results = interleaved["seconds"], interleaved["result"]
    for name, result in results.items():
        for key, value in result.items():
            assert results["lowlabel"][key] == value, (name, key, results["lowlabel"][key], value)
    return {"images": n, "ref_images": n_ref, "interval": interval, "fast": fast_all,
            "reference_two_passes": ref_two, "interleaved_seconds": seconds}  # fmt: skip


def report_wsol(r: dict[str, Any]) -> None:
    fast, sec = r["fast"], r["interleaved_seconds"]
    print(
        f"WSOL interval {r['interval']}: lowlabel {fast['seconds']:.1f} s for {r['images']} images "
        f"({1e3 * fast['seconds'] / r['images']:.1f} ms/image, peak +{fast['peak_mb']:.0f} MB; reference loop "
        f"peak +{r['reference_two_passes']['peak_mb']:.0f} MB)"
    )
    per = 1e3 * sec["lowlabel"] / r["ref_images"]
    print(f"  image by image in turn on {r['ref_images']} images: lowlabel {per:.1f} ms/image")
    for name in ("reference_two_passes", "reference_shared_contours", "lowlabel_contour_path"):
        other = 1e3 * sec[name] / r["ref_images"]
        print(f"  {name}: {other:.1f} ms/image -> lowlabel is {other / per:.1f}x faster; identical MaxBoxAcc V1/V2")


# ---------------------------------------------------------------- DAVIS


def synth_davis(seq: int, frames: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """GT and prediction ``(T, H, W)`` uint8: 2-3 moving ellipses; the prediction is shifted, eroded or missing."""
    import cv2

    rng = np.random.default_rng(1000 + seq)
    h, w = size
    n_obj = int(rng.integers(2, 4))
    start = rng.uniform([0.2 * w, 0.2 * h], [0.8 * w, 0.8 * h], (n_obj, 2))
    velocity = rng.normal(0, 0.004 * w, (n_obj, 2))
    axes = rng.uniform(0.04 * w, 0.15 * w, (n_obj, 2))
    gt = np.zeros((frames, h, w), np.uint8)
    pred = np.zeros((frames, h, w), np.uint8)
    for t in range(frames):
        for k in range(n_obj):
            c = start[k] + t * velocity[k]
            center = (int(c[0]), int(c[1]))
            ax = (int(axes[k, 0]), int(axes[k, 1]))
            cv2.ellipse(gt[t], center, ax, 15.0 * k + t, 0, 360, k + 1, -1)
            if rng.random() < 0.9:  # sometimes the object is lost in the prediction
                shift = (int(c[0] + rng.normal(0, 4)), int(c[1] + rng.normal(0, 4)))
                shrink = (max(int(ax[0] * rng.uniform(0.8, 1.1)), 1), max(int(ax[1] * rng.uniform(0.8, 1.1)), 1))
                cv2.ellipse(pred[t], shift, shrink, 15.0 * k + t, 0, 360, k + 1, -1)
        gt[t, : h // 40, :] = 255 * (t % 7 == 0)  # a void band now and then
    return gt, pred


def davis_fast(seqs: list[int], frames: int, size: tuple[int, int]) -> tuple[float, dict[str, Any]]:
    from lowlabel.metrics.davis import DavisEvaluator

    ev = DavisEvaluator()
    total = 0.0
    for s in seqs:
        gt, pred = synth_davis(s, frames, size)
        t0 = clock()
        ev.update(f"s{s}", gt, pred)
        total += clock() - t0
    return total, {"global": ev.compute(), "per_object": ev.per_object}


def davis_reference(seqs: list[int], frames: int, size: tuple[int, int], dilate: str) -> tuple[float, dict[str, Any]]:
    """Full-frame J and F per object and frame; ``dilate`` is "skimage" (binary_dilation) or "cv2" (official)."""
    import warnings

    import cv2
    from skimage.morphology import binary_dilation, disk

    from lowlabel.metrics.davis import bound_pixels, db_statistics, seg2bmap

    warnings.simplefilter("ignore", FutureWarning)  # binary_dilation is deprecated in scikit-image 0.26
    per_object: dict[str, dict[str, float]] = {}
    total = 0.0
    for s in seqs:
        gt_all, pred_all = synth_davis(s, frames, size)
        t0 = clock()
        n_obj = int(gt_all[0][gt_all[0] != 255].max())
        gt = np.where(gt_all == 255, 0, gt_all)[1:-1]
        pred = pred_all[1:-1]
        footprint = disk(bound_pixels(size))
        j = np.zeros((n_obj, len(gt)))
        f = np.zeros((n_obj, len(gt)))
        for t in range(len(gt)):
            for k in range(n_obj):
                g, p = gt[t] == k + 1, pred[t] == k + 1
                union = (g | p).sum()
                j[k, t] = 1.0 if union == 0 else (g & p).sum() / union
                gb, pb = seg2bmap(g), seg2bmap(p)
                if dilate == "cv2":
                    g_dil = cv2.dilate(gb.astype(np.uint8), footprint.astype(np.uint8)).astype(bool)
                    p_dil = cv2.dilate(pb.astype(np.uint8), footprint.astype(np.uint8)).astype(bool)
                else:
                    g_dil, p_dil = binary_dilation(gb, footprint), binary_dilation(pb, footprint)
                n_p, n_g = pb.sum(), gb.sum()
                if n_p == 0 or n_g == 0:
                    prec, rec = (1.0 if n_p == 0 else 0.0), (1.0 if n_g == 0 else 0.0)
                else:
                    prec, rec = (pb & g_dil).sum() / n_p, (gb & p_dil).sum() / n_g
                f[k, t] = 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)
        for k in range(n_obj):
            jm, jr, jd = db_statistics(j[k])
            fm, fr, fd = db_statistics(f[k])
            per_object[f"s{s}_{k + 1}"] = {"J-Mean": jm, "J-Recall": jr, "J-Decay": jd, "F-Mean": fm,
                                           "F-Recall": fr, "F-Decay": fd}  # fmt: skip
        total += clock() - t0
    return total, {"per_object": per_object}


def bench_davis(n_seq: int, n_ref_skimage: int, frames: int, size: tuple[int, int]) -> dict[str, Any]:
    seqs = list(range(n_seq))
    fast = in_process(davis_fast, seqs, frames, size)
    fast_sub = in_process(davis_fast, seqs[:n_ref_skimage], frames, size)
    ref_cv2 = in_process(davis_reference, seqs, frames, size, "cv2")
    ref_sk = in_process(davis_reference, seqs[:n_ref_skimage], frames, size, "skimage")
    for ref, ours in ((ref_cv2, fast), (ref_sk, fast_sub)):
        assert ref["result"]["per_object"] == ours["result"]["per_object"]
    fast["result"] = fast["result"]["global"]
    fast_sub["result"] = fast_sub["result"]["global"]
    ref_cv2["result"] = ref_sk["result"] = "identical per-object values"
    return {"sequences": n_seq, "frames": frames, "size": list(size), "skimage_ref_sequences": n_ref_skimage,
            "fast": fast, "fast_on_skimage_subset": fast_sub, "reference_cv2_full_frame": ref_cv2,
            "reference_skimage": ref_sk}  # fmt: skip


# ---------------------------------------------------------------- COCO


def synth_coco(n_images: int, n_cats: int = 80) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(7)
    images = [{"id": i + 1, "width": 640, "height": 480} for i in range(n_images)]
    cats = [{"id": c + 1, "name": f"c{c}"} for c in range(n_cats)]
    anns, dets = [], []
    for img in images:
        for _ in range(int(rng.integers(1, 12))):
            cat = int(rng.integers(1, n_cats + 1))
            w, h = float(rng.uniform(8, 300)), float(rng.uniform(8, 300))
            x, y = float(rng.uniform(0, 640 - w)), float(rng.uniform(0, 480 - h))
            anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": cat, "bbox": [x, y, w, h],
                         "area": w * h * 0.7, "iscrowd": int(rng.random() < 0.02)})  # fmt: skip
            for _ in range(int(rng.integers(0, 4))):
                j = rng.normal(0, 0.1, 4) * [w, h, w, h]
                dets.append({"image_id": img["id"], "category_id": cat, "score": float(rng.random()),
                             "bbox": [x + j[0], y + j[1], max(w + j[2], 1.0), max(h + j[3], 1.0)]})  # fmt: skip
        for _ in range(int(rng.integers(0, 10))):
            dets.append({"image_id": img["id"], "category_id": int(rng.integers(1, n_cats + 1)),
                         "score": float(rng.random() * 0.5), "bbox": [float(rng.uniform(0, 500)),
                         float(rng.uniform(0, 400)), 60.0, 50.0]})  # fmt: skip
    return {"images": images, "annotations": anns, "categories": cats}, dets


def coco_fast(n_images: int) -> tuple[float, dict[str, Any]]:
    from lowlabel.metrics.coco import coco_box_ap

    gt, dets = synth_coco(n_images)
    t0 = clock()
    out = coco_box_ap(gt, dets)
    return clock() - t0, out["all"]


def coco_reference(n_images: int) -> tuple[float, dict[str, Any]]:
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, dets = synth_coco(n_images)
    t0 = clock()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    keys = ("AP", "AP50", "AP75", "APs", "APm", "APl")
    return clock() - t0, {k: float(v) * 100 for k, v in zip(keys, ev.stats[:6])}


def bench_coco(n_images: int) -> dict[str, Any]:
    fast = in_process(coco_fast, n_images)
    ref = in_process(coco_reference, n_images)
    for key, value in ref["result"].items():
        assert abs(fast["result"][key] - value) < 1e-9, (key, fast["result"][key], value)
    return {"images": n_images, "fast": fast, "reference_pycocotools": ref}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=["wsol", "davis", "coco"])
    parser.add_argument("--wsol-images", type=int, default=5000)
    parser.add_argument("--wsol-ref-images", type=int, default=200, help="images the slow references score")
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--davis-seqs", type=int, default=30)
    parser.add_argument("--davis-skimage-seqs", type=int, default=1, help="sequences the scikit-image reference scores")
    parser.add_argument("--davis-frames", type=int, default=50)
    parser.add_argument("--davis-size", type=int, nargs=2, default=[480, 854])
    parser.add_argument("--coco-images", type=int, default=5000)
    parser.add_argument("--out", type=str, default=None, help="write the raw results as JSON")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    if "wsol" in args.only:
        results["wsol"] = bench_wsol(args.wsol_images, args.wsol_ref_images, args.interval)
        report_wsol(results["wsol"])
    if "davis" in args.only:
        size = (args.davis_size[0], args.davis_size[1])
        results["davis"] = bench_davis(args.davis_seqs, args.davis_skimage_seqs, args.davis_frames, size)
        report_davis(results["davis"])
    if "coco" in args.only:
        results["coco"] = bench_coco(args.coco_images)
        r = results["coco"]
        print(
            f"COCO {r['images']} images: faster-coco-eval {r['fast']['seconds']:.2f} s "
            f"({r['fast']['peak_mb']:.0f} MB), pycocotools {r['reference_pycocotools']['seconds']:.2f} s "
            f"({r['reference_pycocotools']['peak_mb']:.0f} MB), identical AP/AP50/AP75/APs/APm/APl"
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2, default=float))


def report_davis(r: dict[str, Any]) -> None:
    fast, sub = r["fast"], r["fast_on_skimage_subset"]
    cv, sk = r["reference_cv2_full_frame"], r["reference_skimage"]
    print(
        f"DAVIS {r['sequences']} seqs x {r['frames']} frames {r['size']}: fast {fast['seconds']:.1f} s "
        f"(peak +{fast['peak_mb']:.0f} MB); full-frame cv2 (official) {cv['seconds']:.1f} s "
        f"-> {cv['seconds'] / fast['seconds']:.1f}x (peak +{cv['peak_mb']:.0f} MB)"
    )
    print(
        f"  scikit-image reference on {r['skimage_ref_sequences']} seqs: {sk['seconds']:.1f} s vs fast "
        f"{sub['seconds']:.2f} s -> {sk['seconds'] / sub['seconds']:.1f}x; identical per-object J/F statistics"
    )


if __name__ == "__main__":
    main()
