"""Per-image evaluation artefacts that the report draws, written by a method's ``evaluate``.

This module sits below the methods and the report (it imports neither): methods write these files, the
report reads them.

The report never reloads a model: evaluation leaves, in ``<run>/eval/<split>/``,

* ``per_image.csv``: ``image_id,score`` rows, the method's per-image metric (higher is better:
  box IoU for localization, image mIoU for segmentation). The failure gallery shows the lowest.
* ``samples/<image_id>.npz``: one file per sample image, written by :func:`save_sample`.

Sample images are the first ``num_fixed`` ids of the split in sorted order (the same for every run
on the same data, so a method and its baseline are shown on the same images), plus the
``num_worst`` lowest-scoring ones; :class:`SampleKeeper` chooses them in one pass with bounded memory.

An ``.npz`` holds ``kind`` (a string naming the panel type: ``"localization"``,
``"segmentation"``, ``"propagation"``, ``"detection"``, ``"translation"``), ``image``
(uint8 H×W×3) and kind-specific arrays:

* localization: ``heatmap`` (float32 H×W in [0, 1]), ``gt_boxes`` (N×4 xyxy inclusive pixels),
  ``pred_boxes`` (M×4), optional ``gt_mask`` (uint8 H×W);
* segmentation: ``gt`` (uint8 H×W class ids, 255 ignore), ``seed`` (uint8 H×W), optional
  ``pseudo`` (uint8 H×W), plus ``class_names`` (array of str, index = class id);
* detection: ``gt_boxes`` (N×4 xyxy inclusive pixels), ``pred_boxes`` (M×4), ``pred_scores`` (M,),
  ``pred_labels`` (M,), ``class_names``;
* translation (``image`` is the target-domain input): ``translated`` (uint8 H×W×3), optional ``clean`` (its clean
  twin), ``gt_boxes``, and per picture ``raw_``/``translated_``/``clean_`` ``boxes``, ``scores``, ``labels``;
* propagation (the ``image_id`` is the sequence): ``frames`` (uint8 K×H×W×3, a strip of the sequence),
  ``pred`` and ``gt`` (uint8 K×H×W object ids), ``frame_names`` (array of str).

Extra text fields (``label``, ``caption``) are stored as 0-d string arrays. The report
HTML-escapes every string it shows.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

NUM_FIXED = 6  # fixed sample ids per split (the first ids in sorted order); the report shows at most these
NUM_WORST = 6


def save_sample(out_dir: Path, image_id: str, kind: str, image: np.ndarray, **arrays: Any) -> Path:
    """Write ``<out_dir>/samples/<safe id>.npz`` and return its path."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"sample {image_id}: image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    folder = Path(out_dir) / "samples"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (safe_name(image_id) + ".npz")
    payload = {k: np.asarray(v) for k, v in arrays.items() if v is not None}
    np.savez_compressed(path, kind=np.asarray(kind), image_id=np.asarray(image_id), image=image, **payload)
    return path


def load_sample(path: Path) -> dict[str, Any]:
    """Read a sample written by :func:`save_sample`; 0-d string arrays come back as ``str``."""
    with np.load(path, allow_pickle=False) as data:
        out: dict[str, Any] = {}
        for key in data.files:
            value = data[key]
            out[key] = str(value) if value.dtype.kind == "U" and value.ndim == 0 else value
    return out


def write_per_image(out_dir: Path, scores: Mapping[str, float] | Iterable[tuple[str, float]]) -> Path:
    """Write ``<out_dir>/per_image.csv`` with ``image_id,score`` rows."""
    items = scores.items() if isinstance(scores, Mapping) else scores
    path = Path(out_dir) / "per_image.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_id", "score"])
        for image_id, score in items:
            writer.writerow([image_id, f"{float(score):.6f}"])
    return path


def read_per_image(path: Path) -> dict[str, float]:
    """Read ``per_image.csv`` back into ``{image_id: score}``."""
    with open(path, newline="") as f:
        return {row["image_id"]: float(row["score"]) for row in csv.DictReader(f)}


class SampleKeeper:
    """Chooses an evaluation's sample images in one pass, holding at most ``num_fixed + 2 * num_worst`` payloads.

    The samples are the first ``num_fixed`` ids of the split in sorted order (the same images for every run on
    the same data) and the ``num_worst`` lowest-scoring other ids (ties: the smaller id). Non-finite scores
    count as the lowest. A payload (the arrays to draw) is kept only while its image may still be chosen, so an
    evaluation of 50,000 images holds a dozen payloads, not 50,000::

        keeper = SampleKeeper(split_ids, num_fixed=6, num_worst=6)
        for image_id, score, arrays in results:
            keeper.offer(image_id, score, arrays)
        for image_id, arrays in keeper.chosen():
            save_sample(out_dir, image_id, ..., **arrays)
    """

    def __init__(self, ids: Iterable[str], num_fixed: int = NUM_FIXED, num_worst: int = NUM_WORST) -> None:
        self.fixed_ids = sorted(ids)[: max(num_fixed, 0)]
        self._fixed_set = set(self.fixed_ids)
        self.num_worst = max(num_worst, 0)
        self._fixed: dict[str, Any] = {}
        self._worst: list[tuple[float, str, Any]] = []  # (score, id, payload), at most 2 * num_worst

    def offer(self, image_id: str, score: float, payload: Any = None) -> None:
        """Consider one image; keep ``payload`` if the image is a fixed sample or among the worst so far."""
        if image_id in self._fixed_set:
            self._fixed[image_id] = payload
            return
        if self.num_worst == 0:
            return
        key = float(score) if np.isfinite(score) else float("-inf")
        self._worst.append((key, image_id, payload))
        if len(self._worst) >= 2 * self.num_worst:  # amortised: sort and cut back to the worst num_worst
            self._worst = sorted(self._worst, key=lambda t: (t[0], t[1]))[: self.num_worst]

    def chosen(self) -> list[tuple[str, Any]]:
        """``(image_id, payload)`` of the fixed samples seen (sorted), then of the worst (lowest score first)."""
        worst = sorted(self._worst, key=lambda t: (t[0], t[1]))[: self.num_worst]
        return [(i, self._fixed[i]) for i in self.fixed_ids if i in self._fixed] + [(i, p) for _, i, p in worst]


def choose_sample_ids(
    ids: Iterable[str], scores: Mapping[str, float], num_fixed: int = NUM_FIXED, num_worst: int = NUM_WORST
) -> list[str]:
    """The first ``num_fixed`` ids in sorted order, then the ``num_worst`` lowest-scoring others
    (:class:`SampleKeeper` over scores already known)."""
    ids = list(ids)
    keeper = SampleKeeper(ids, num_fixed, num_worst)
    fixed = set(keeper.fixed_ids)
    for image_id in keeper.fixed_ids:
        keeper.offer(image_id, 0.0)
    for image_id, score in scores.items():
        if image_id not in fixed:
            keeper.offer(image_id, score)
    return [image_id for image_id, _ in keeper.chosen()]


def safe_name(image_id: str) -> str:
    """A file-name-safe version of an image id (ids may contain ``/``)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in image_id)
