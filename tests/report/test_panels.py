"""Panel drawing: boxes on the right pixels, heat-map blend, VOC colours, the PANELS plug-in dict."""

from __future__ import annotations

import numpy as np
import pytest

from lowlabel.report import panels
from lowlabel.report.panels import PANELS, Panel, Tile, draw_panel


def loc_sample() -> dict:
    image = np.full((40, 50, 3), 100, dtype=np.uint8)  # H=40, W=50: upscale factor ceil(160/50) = 4
    heat = np.zeros((40, 50), dtype=np.float32)
    heat[20, 30] = 1.0
    return {"kind": "localization", "image_id": "a/b", "image": image, "heatmap": heat,
            "gt_boxes": np.array([[5.0, 6.0, 20.0, 30.0]]), "pred_boxes": np.array([[10.0, 2.0, 40.0, 12.0]]),
            "label": "circle"}


def test_localization_boxes_and_heat_blend() -> None:
    panel = draw_panel(loc_sample())
    assert [t.title for t in panel.tiles] == ["image + GT", "heat map + boxes"]
    img, overlay = panel.tiles[0].image, panel.tiles[1].image
    assert img.shape == (160, 200, 3)
    s = 4
    # GT box [5, 6, 20, 30] inclusive -> upscaled outline from (20, 24) to (20*4+3, 30*4+3) = (83, 123).
    assert tuple(img[6 * s, 5 * s]) == (0, 220, 0)
    assert tuple(img[30 * s + 3, 20 * s + 3]) == (0, 220, 0)
    assert tuple(img[18 * s, 12 * s]) == (100, 100, 100)  # inside the box: untouched
    assert tuple(img[30 * s + 4, 20 * s + 4]) == (100, 100, 100)  # just outside the corner
    # predicted box [10, 2, 40, 12] in red on the overlay only
    assert tuple(overlay[2 * s, 25 * s]) == (255, 40, 40)
    assert tuple(img[2 * s, 25 * s]) == (100, 100, 100)
    # heat 1 at (20, 30): jet(1.0) = (0.5, 0, 0) -> 0.5 * (127.5, 0, 0) + 0.5 * 100 = (113.75, 50, 50)
    assert tuple(overlay[20 * s + 1, 30 * s + 1]) == (114, 50, 50)
    # heat 0: jet(0.0) = (0, 0, 0.5) -> (50, 50, 113.75)
    assert tuple(overlay[1, 1]) == (50, 50, 114)
    assert panel.caption == "a/b · label: circle"
    assert [name for name, _ in panel.legend] == ["GT box", "predicted box"]


def test_localization_heatmap_of_other_size_is_resized() -> None:
    sample = loc_sample()
    sample["heatmap"] = np.ones((224, 224), dtype=np.float32)
    sample["gt_mask"] = np.zeros((40, 50), dtype=np.uint8)
    panel = draw_panel(sample)
    assert panel.tiles[1].image.shape == (160, 200, 3)
    assert tuple(panel.tiles[1].image[100, 100]) == (114, 50, 50)
    assert panel.tiles[2].title == "GT mask"


def test_segmentation_uses_voc_colours_and_legend() -> None:
    gt = np.zeros((32, 32), dtype=np.uint8)
    gt[0:10, 0:10] = 1
    gt[20:30, 20:30] = 2
    gt[15, :] = 255
    seed = np.zeros_like(gt)
    seed[0:5, 0:5] = 3
    sample = {"kind": "segmentation", "image_id": "x", "image": np.zeros((32, 32, 3), np.uint8), "gt": gt,
              "seed": seed, "class_names": np.array(["background", "cat", "dog"])}
    panel = draw_panel(sample)
    assert [t.title for t in panel.tiles] == ["image", "seed", "ground truth"]
    s = 5  # ceil(160 / 32)
    gt_tile, seed_tile = panel.tiles[2].image, panel.tiles[1].image
    # PASCAL VOC devkit colours: 0 black, 1 (128,0,0), 2 (0,128,0), 3 (128,128,0), 255 (224,224,192)
    assert tuple(gt_tile[2 * s, 2 * s]) == (128, 0, 0)
    assert tuple(gt_tile[25 * s, 25 * s]) == (0, 128, 0)
    assert tuple(gt_tile[15 * s, 3]) == (224, 224, 192)
    assert tuple(gt_tile[12 * s, 2]) == (0, 0, 0)
    assert tuple(seed_tile[2 * s, 2 * s]) == (128, 128, 0)
    assert panel.legend == [("background", (0, 0, 0)), ("cat", (128, 0, 0)), ("dog", (0, 128, 0)),
                            ("class 3", (128, 128, 0)), ("ignore", (224, 224, 192))]


def test_unknown_kind_falls_back_to_the_image() -> None:
    panel = draw_panel({"kind": "hologram", "image_id": "z", "image": np.zeros((200, 300, 3), np.uint8)})
    assert len(panel.tiles) == 1 and panel.tiles[0].image.shape == (200, 300, 3)
    assert "no panel for kind 'hologram'" in panel.caption


def test_a_new_kind_plugs_in_through_the_dict(monkeypatch: pytest.MonkeyPatch) -> None:
    def draw_strip(sample: dict) -> Panel:
        return Panel(tiles=[Tile(f"frame {i}", f) for i, f in enumerate(sample["frames"])], caption="strip")

    monkeypatch.setitem(PANELS, "propagation", draw_strip)
    frames = np.zeros((3, 8, 8, 3), np.uint8)
    panel = draw_panel({"kind": "propagation", "image_id": "v", "image": frames[0], "frames": frames})
    assert [t.title for t in panel.tiles] == ["frame 0", "frame 1", "frame 2"]


def test_bad_image_raises() -> None:
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        panels.draw_localization({**loc_sample(), "image": np.zeros((4, 4, 3), np.float32)})


def test_translation_panel_draws_three_views_with_their_confident_detections() -> None:
    grey = np.full((40, 50, 3), 100, dtype=np.uint8)  # upscale factor 4
    sample = {"kind": "translation", "image_id": "t0", "image": grey, "translated": grey.copy(), "clean": grey.copy(),
              "gt_boxes": np.array([[5.0, 6.0, 20.0, 30.0]]),
              "raw_boxes": np.array([[10.0, 2.0, 40.0, 12.0]]), "raw_scores": np.array([0.4]),  # below 0.5: hidden
              "translated_boxes": np.array([[10.0, 2.0, 40.0, 12.0]]), "translated_scores": np.array([0.9])}
    panel = draw_panel(sample)
    assert [t.title for t in panel.tiles] == ["target", "translated", "clean twin"]
    raw, translated, clean = (t.image for t in panel.tiles)
    s = 4
    for img in (raw, translated, clean):
        assert tuple(img[6 * s, 5 * s]) == (0, 220, 0)  # the GT box on every view
    assert tuple(translated[2 * s, 25 * s]) == (255, 40, 40)  # its confident detection
    assert tuple(raw[2 * s, 25 * s]) == (100, 100, 100)  # the raw detection scored 0.4: not drawn
    assert tuple(clean[2 * s, 25 * s]) == (100, 100, 100)  # no detections of the clean twin in this sample
    del sample["clean"]
    assert [t.title for t in draw_panel(sample).tiles] == ["target", "translated"]


def test_detection_panel() -> None:
    sample = {"kind": "detection", "image_id": "d", "image": np.zeros((40, 50, 3), np.uint8),
              "gt_boxes": np.zeros((0, 4)), "pred_boxes": np.array([[1.0, 1.0, 9.0, 9.0]]), "pred_scores": [0.7]}
    panel = draw_panel(sample)
    assert tuple(panel.tiles[0].image[4, 4 * 5]) == (255, 40, 40)


def test_open_vocab_panel_highlights_novel_classes() -> None:
    grey = np.full((40, 50, 3), 100, dtype=np.uint8)  # upscale factor 4
    sample = {"kind": "detection", "image_id": "o1", "image": grey,
              "gt_boxes": np.array([[5.0, 6.0, 20.0, 30.0], [30.0, 5.0, 45.0, 35.0]]), "gt_labels": np.array([0, 2]),
              "pred_boxes": np.array([[5.0, 6.0, 20.0, 30.0], [31.0, 6.0, 44.0, 34.0], [1.0, 1.0, 3.0, 3.0]]),
              "pred_labels": np.array([0, 2, 1]), "pred_scores": np.array([0.9, 0.8, 0.3]),
              "class_names": np.array(["cat", "dog", "zebra"]), "novel_classes": np.array([False, False, True])}
    panel = draw_panel(sample)
    img = panel.tiles[0].image
    s = 4
    # Base GT box 0 lies under its own (base, red) detection; the novel GT box [30, 5, 45, 35] is gold on its right
    # edge and the novel detection [31, 6, 44, 34] inside it magenta.
    assert tuple(img[6 * s, 5 * s]) == panels.PRED_COLOR
    assert tuple(img[20 * s, 45 * s + 3]) == panels.NOVEL_GT_COLOR
    assert tuple(img[20 * s, 44 * s + 3]) == panels.NOVEL_PRED_COLOR
    assert tuple(img[2 * s, 2 * s]) == (100, 100, 100)  # the 0.3 detection is not drawn
    assert "novel in the image: zebra" in panel.caption and "novel detected: zebra" in panel.caption
    assert [name for name, _ in panel.legend][1] == "GT box, novel class"
    plain = draw_panel({k: v for k, v in sample.items() if k != "novel_classes"})  # the closed-set detector panel
    assert tuple(plain.tiles[0].image[20 * s, 44 * s + 3]) == panels.PRED_COLOR
    with pytest.raises(ValueError, match="2 gt boxes but 1 labels"):
        draw_panel({**sample, "gt_labels": np.array([0])})
