"""Component-tree box extraction (lowlabel.metrics.wsol_tree) against OpenCV's findContours, level by level."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lowlabel.metrics import wsol
from lowlabel.metrics.wsol_tree import tree_level_boxes


def cv2_level(u8: np.ndarray, level: int) -> tuple[set[tuple[int, ...]], tuple[int, ...]]:
    """Every contour box and the V1 box of ``u8 > level``, straight from OpenCV (written for the test)."""
    h, w = u8.shape
    binary = ((u8 > level) * 255).astype(np.uint8)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return {(0, 0, 0, 0)}, (0, 0, 0, 0)

    def box(c: np.ndarray) -> tuple[int, ...]:
        x, y, bw, bh = cv2.boundingRect(c)
        return (x, y, min(x + bw, w - 1), min(y + bh, h - 1))

    return {box(c) for c in contours}, box(max(contours, key=cv2.contourArea))


def check_all_levels(u8: np.ndarray, levels: np.ndarray) -> None:
    all_boxes, offsets, largest = wsol.level_boxes(u8, levels)
    for i, level in enumerate(levels.tolist()):
        boxes, v1 = cv2_level(u8, level)
        ours = {tuple(b) for b in all_boxes[offsets[i] : offsets[i + 1]].tolist()}
        assert ours == boxes, (level, u8.tolist())
        assert tuple(largest[i].tolist()) == v1, (level, u8.tolist())


def random_map(rng: np.random.Generator, kind: int) -> np.ndarray:
    h, w = (int(v) for v in rng.integers(3, 24, 2))
    if kind == 0:  # noise: many components, holes, nested components and ties
        return rng.integers(0, 256, (h, w)).astype(np.uint8)
    if kind == 1:  # few levels: large plateaus
        return (rng.integers(0, 4, (h, w)) * 60).astype(np.uint8)
    if kind == 2:  # binary noise at one level
        return ((rng.random((h, w)) < rng.uniform(0.2, 0.8)) * 200).astype(np.uint8)
    smooth = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), float(rng.uniform(0.7, 2.5)))
    return (smooth / smooth.max() * 255).astype(np.uint8)


@pytest.mark.parametrize("kind", [0, 1, 2, 3])
def test_every_level_matches_findcontours(kind: int) -> None:
    rng = np.random.default_rng(kind)
    for _ in range(150):
        u8 = random_map(rng, kind)
        levels = np.unique(np.concatenate([np.unique(u8), rng.integers(0, 256, 4)])).astype(np.int64)
        check_all_levels(u8, levels)


def test_cam_sized_map_matches_findcontours() -> None:
    rng = np.random.default_rng(7)
    cam = cv2.resize(rng.random((14, 14)).astype(np.float32), (224, 224), interpolation=cv2.INTER_CUBIC)
    u8 = wsol.quantize(wsol.normalize_scoremap(cam))
    check_all_levels(u8, np.unique(u8)[::3].astype(np.int64))


def from_rows(rows: list[str]) -> np.ndarray:
    """A uint8 map from ``#`` (255) and ``.`` (0) rows."""
    return np.array([[255 if c == "#" else 0 for c in row] for row in rows], dtype=np.uint8)


def test_hole_box_is_the_hole_grown_by_one() -> None:
    # a 5x5 square at x, y = 2..6 with a one-pixel hole at (4, 4): outer box (2, 2, 6 + 1, 6 + 1) and the hole
    # border through the 8 pixels around the hole: extents 3..5 -> box (3, 3, 5 + 1, 5 + 1)
    u8 = np.zeros((9, 9), np.uint8)
    u8[2:7, 2:7] = 255
    u8[4, 4] = 0
    rows, largest, needs_order, nested = tree_level_boxes(u8, np.array([0]))
    assert sorted(map(tuple, rows.tolist())) == [(2, 2, 7, 7, 0), (3, 3, 6, 6, 0)]
    assert tuple(largest[0]) == (2, 2, 7, 7)
    assert not needs_order[0] and not nested[0]
    check_all_levels(u8, np.array([0, 100]))


def test_tie_between_ring_and_its_hole_goes_to_findcontours() -> None:
    # a diagonal ring (quad area 0) around one hole pixel, with a tail: the outer border and the hole border
    # both have area 2, so V1 depends on findContours's order; the tail makes the two boxes differ
    u8 = from_rows([".......", "...#...", "..#.#..", "...#...", "....#..", ".....#.", "......."])
    _, _, needs_order, _ = tree_level_boxes(u8, np.array([0]))
    assert needs_order[0]
    check_all_levels(u8, np.array([0]))


def test_tie_between_two_components_goes_to_findcontours() -> None:
    u8 = from_rows(["......", ".##...", ".##...", "......", "...##.", "...##.", "......"])
    _, _, needs_order, _ = tree_level_boxes(u8, np.array([0]))
    assert needs_order[0]
    check_all_levels(u8, np.array([0]))


def test_component_inside_a_hole_is_flagged_and_found() -> None:
    # a ring with an island in its hole: three contours (ring, its hole, the island)
    u8 = from_rows(["#######", "#.....#", "#.###.#", "#.###.#", "#.....#", "#######"])
    _, _, _, nested = tree_level_boxes(u8, np.array([0]))
    assert nested[0]
    all_boxes, _, largest = wsol.level_boxes(u8, np.array([0]))
    # ring: extents 0..6 x 0..5, x + w clipped -> (0, 0, 6, 5); hole: extents 1..5 x 1..4 grown by one -> the
    # same box; island: extents 2..4 x 2..3 -> (2, 2, 5, 4)
    assert sorted(map(tuple, all_boxes.tolist())) == [(0, 0, 6, 5), (0, 0, 6, 5), (2, 2, 5, 4)]
    assert tuple(largest[0]) == (0, 0, 6, 5)
    check_all_levels(u8, np.array([0]))
    ring_only = u8.copy()
    ring_only[2:4, 2:5] = 0
    assert not tree_level_boxes(ring_only, np.array([0]))[3][0]


def test_empty_and_full_levels() -> None:
    u8 = np.full((5, 6), 40, np.uint8)
    all_boxes, offsets, largest = wsol.level_boxes(u8, np.array([39, 40, 255]))
    assert all_boxes[offsets[0] : offsets[1]].tolist() == [[0, 0, 5, 4]]  # x + w = 6 clipped to 5
    assert all_boxes[offsets[1] : offsets[2]].tolist() == [[0, 0, 0, 0]]  # nothing above 40
    assert largest.tolist() == [[0, 0, 5, 4], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_levels_must_be_distinct_cuts() -> None:
    with pytest.raises(ValueError, match="distinct"):
        tree_level_boxes(np.zeros((4, 4), np.uint8), np.array([3, 3]))
    with pytest.raises(ValueError, match="0..255"):
        tree_level_boxes(np.zeros((4, 4), np.uint8), np.array([256]))
