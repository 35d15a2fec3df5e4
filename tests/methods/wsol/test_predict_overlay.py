"""`lowlabel predict` overlays for WSOL: the heat map with the boxes drawn (the top one thick), the class name and the
score on a tag, as detection toolkits draw them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lowlabel.methods.wsol.common import draw_boxes_with_label, write_localization
from lowlabel.structures import Localization


def test_boxes_and_tag_are_drawn() -> None:
    image = np.zeros((80, 100, 3), np.uint8)
    draw_boxes_with_label(image, np.array([[20, 30, 60, 70], [5, 5, 15, 15]]), "bird 0.93")
    white = (image == 255).all(axis=2)
    assert white[50, 16:26].sum() >= 2 and white[50, 40]  == 0  # the top box's left edge: thick; inside: untouched
    assert white[10, 2:9].sum() == 1  # the other box's edge: 1 px
    tag = image[19:30, 20:60]  # the tag sits just above the top box: white fill with dark text
    assert (tag == 255).all(axis=2).mean() > 0.5 and (tag.max(axis=2) < 128).any()


def test_prediction_overlay_has_the_box(tmp_path: Path) -> None:
    image = np.full((40, 60, 3), 90, np.uint8)
    pred = Localization(heatmap=torch.zeros(40, 60), boxes=torch.tensor([[10.0, 12.0, 40.0, 30.0]]), label=1,
                        score=0.75)
    row = write_localization(tmp_path, Path("x.jpg"), "x", image, pred, ["cat", "dog"])
    drawn = np.asarray(Image.open(tmp_path / row["overlay"]))
    assert row["class_name"] == "dog" and (drawn[20, 10] == 255).all() and (drawn[20, 40] == 255).all()
