"""``predict`` (files in, files out) built on a method's ``predict_batch`` (tensors in, typed predictions out).

``lowlabel predict <method> --input DIR --out DIR`` calls the method's ``predict``; image methods implement it
as :func:`predict_files` with a writer for their prediction type, so the files hold exactly what
``predict_batch`` returns in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lowlabel.data.io import list_images, load_rgb
from lowlabel.models.modes import eval_mode

PredictBatch = Callable[[Mapping[str, nn.Module], Sequence[torch.Tensor]], list[Any]]
# writer(out_dir, source file, output name stem, image (H, W, 3) uint8, prediction) -> a row for an index file
Writer = Callable[[Path, Path, str, np.ndarray, Any], Any]


def output_name(path: Path, inputs: Path) -> str:
    """A flat file-name stem for ``path`` under ``inputs`` (``a/b.jpg`` -> ``a_b``; a single file: its stem)."""
    rel = path.relative_to(inputs).with_suffix("") if path != inputs else Path(path.stem)
    return str(rel).replace("/", "_")


def predict_files(predict_batch: PredictBatch, nets: Mapping[str, nn.Module], inputs: Path, out: Path,
                  write: Writer, *, batch_size: int = 8) -> list[Any]:
    """Run ``predict_batch`` over every image in ``inputs`` (a folder, recursively, or one file), ``batch_size``
    images at a time, with ``nets`` in eval mode (restored after), and ``write`` each prediction into ``out``.

    Returns:
        The writer's rows, in input order (e.g. for a ``boxes.json`` index).

    Raises:
        DataError: ``inputs`` holds no image, or an image is unreadable (naming the file).
    """
    inputs, out = Path(inputs), Path(out)
    files = list_images(inputs)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for start in range(0, len(files), batch_size):
        chunk = files[start : start + batch_size]
        arrays = [load_rgb(path) for path in chunk]  # (H, W, 3) uint8 each
        images = [torch.from_numpy(a).permute(2, 0, 1) for a in arrays]  # (3, H, W) uint8 each
        with eval_mode(nets.values()):
            predictions = predict_batch(nets, images)
        for path, array, prediction in zip(chunk, arrays, predictions):
            rows.append(write(out, path, output_name(path, inputs), array, prediction))
    return rows
