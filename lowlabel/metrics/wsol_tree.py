"""Contour boxes of every threshold level of a uint8 map at once, from component trees (numba).

wsolevaluation thresholds the quantised CAM at up to 1,000 CAM thresholds and calls
``cv2.findContours(RETR_TREE)`` on each binary mask ``u8 > k``. The contours it returns are exactly

* one *outer border* per 8-connected foreground component; its ``boundingRect`` is the component's
  bounding box;
* one *hole border* per 4-connected background component that does not touch the image border
  (``findContours`` pads with zeros); the border runs through the foreground pixels around the hole, so
  its bounding box is the hole's, grown by one pixel on every side.

``cv2.contourArea`` of an outer border (the polygon through the centres of its pixels) equals the area
of the 2x2 pixel quads inside it: 1 for a quad whose four pixels are inside, 1/2 for three, 0 otherwise,
counted over the component *with its holes filled*. The V1 box (first contour of largest area) is
always the outer border of a component that no hole encloses, because a hole's polygon lies inside its
parent's. These filled components are the 8-connected components of ``e > k``, where ``e(p)`` is the
level at which ``p``'s background component first touches the image border.

Two union-find passes over the pixels sorted by value give every level at once:

* from the bottom up, a min-tree of ``u8`` (4-connected background): the holes, and ``e``;
* from the top down, a max-tree of ``e`` (8-connected filled components): outer boxes, areas, and the
  foreground inside each one. The foreground's Euler number (Gray's 2x2 bit quads) gives the number of
  foreground components, ``Euler number + holes``; when that exceeds the number of filled components,
  some component lies inside a hole and its outer border is not a filled component's.

Levels with such nested components, and levels where the V1 choice depends on the order in which
``findContours`` lists contours (two filled components of the same largest area, or a largest one whose
own quad area is 0 around a hole, which then ties with it), are flagged for the caller to compute with
``findContours``; on smooth CAMs that is under 1 % of the levels. ``tests/metrics/test_wsol_tree.py``
checks boxes and V1 choices against OpenCV on random maps.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# All passes work on the map padded by one pixel on each side (flat index ``(y + 1) * (w + 2) + x + 1``), so
# neighbours need no bounds checks: padding pixels are never added to a tree.


@njit(cache=True, nogil=True)
def _sorted_pixels(values: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counting sort of the pixels of ``values`` (H, W) in 0..255 by value (raster order within a value).

    Returns:
        ``order`` (H * W,) padded flat indices, ``xy`` (H * W, 2) their coordinates, ``start`` (257,): the
        pixels of value ``v`` are ``order[start[v]:start[v + 1]]``.
    """
    h = values.shape[0]
    count = np.zeros(257, np.int64)
    for y in range(h):
        for x in range(w):
            count[values[y, x] + 1] += 1
    start = np.cumsum(count)
    fill = start[:256].copy()
    order = np.empty(h * w, np.int32)
    xy = np.empty((h * w, 2), np.int32)
    for y in range(h):
        for x in range(w):
            v = values[y, x]
            i = fill[v]
            order[i] = (y + 1) * (w + 2) + x + 1
            xy[i, 0] = x
            xy[i, 1] = y
            fill[v] = i + 1
    return order, xy, start


@njit(cache=True, nogil=True)
def _record(out: np.ndarray, n_out: int, x0: int, y0: int, x1: int, y1: int, level: int) -> np.ndarray:
    """Append the row ``(x0, y0, x1, y1, level)`` to ``out`` (grown by doubling); returns the array."""
    if n_out == out.shape[0]:
        grown = np.empty((2 * out.shape[0], 5), np.int64)
        grown[:n_out] = out
        out = grown
    out[n_out, 0] = x0
    out[n_out, 1] = y0
    out[n_out, 2] = x1
    out[n_out, 3] = y1
    out[n_out, 4] = level
    return out


# Columns of the per-pixel state rows: the fields of one pixel share a cache line, which matters because
# pixels are visited in value order, i.e. all over the image.
PARENT, SIZE, X0, Y0, X1, Y1, SLOT, EXTRA, MIN_U, MAX_Q3 = range(10)


@njit(cache=True, nogil=True, inline="always")
def _find(state: np.ndarray, i: int) -> int:
    root = i
    while state[root, PARENT] != root:
        root = state[root, PARENT]
    while state[i, PARENT] != root:  # full path compression
        nxt = state[i, PARENT]
        state[i, PARENT] = root
        i = nxt
    return root


@njit(cache=True, nogil=True, inline="always")
def _new_node(state: np.ndarray, p: int, x: int, y: int) -> None:
    state[p, PARENT] = p
    state[p, SIZE] = 1
    state[p, X0] = x
    state[p, Y0] = y
    state[p, X1] = x
    state[p, Y1] = y
    state[p, SLOT] = -1


@njit(cache=True, nogil=True, inline="always")
def _union(state: np.ndarray, a: int, b: int) -> tuple[int, int]:
    """Merge the trees of roots ``a`` and ``b`` (by size, boxes merged); returns (root, absorbed)."""
    if state[a, SIZE] < state[b, SIZE]:
        a, b = b, a
    state[b, PARENT] = a
    state[a, SIZE] += state[b, SIZE]
    state[a, X0] = min(state[a, X0], state[b, X0])
    state[a, Y0] = min(state[a, Y0], state[b, Y0])
    state[a, X1] = max(state[a, X1], state[b, X1])
    state[a, Y1] = max(state[a, Y1], state[b, Y1])
    return a, b


@njit(cache=True, nogil=True, inline="always")
def _deactivate(active: np.ndarray, state: np.ndarray, n_active: int, r: int) -> int:
    """Remove root ``r`` from the list ``active`` (``state[r, SLOT]`` = its position, -1 when absent)."""
    i = state[r, SLOT]
    if i < 0:
        return n_active
    n_active -= 1
    last = active[n_active]
    active[i] = last
    state[last, SLOT] = i
    state[r, SLOT] = -1
    return n_active


@njit(cache=True, nogil=True)
def _ascending(u: np.ndarray, want: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min-tree of ``u`` (4-connected background ``u <= k``), from the bottom level up.

    Returns:
        hole boxes: per wanted ``k``, the background components that do not touch the border, rows
        ``(x0, y0, x1, y1, level index)``;
        ``e`` on the padded grid: the level at which each pixel's background component first touches the
        border (the pixel is inside a filled foreground component exactly while ``e > k``);
        the number of holes per level ``(L,)``.
    """
    h, w = u.shape
    w2 = w + 2
    n2 = (h + 2) * w2
    order, xy, start = _sorted_pixels(u, w)
    added = np.zeros(n2, np.bool_)
    state = np.empty((n2, 8), np.int32)  # EXTRA: level at which the root's component first touched the border
    history = np.full(n2, -1, np.int32)  # parent links without path compression
    active = np.empty(n2, np.int32)  # roots of holes
    n_active = 0
    out = np.empty((256, 5), np.int64)
    n_out = 0
    hole_count = np.zeros(n_levels, np.int64)
    offsets = (-w2, -1, 1, w2)
    for k in range(256):
        for j in range(start[k], start[k + 1]):
            p = order[j]
            x, y = xy[j, 0], xy[j, 1]
            _new_node(state, p, x, y)
            added[p] = True
            if y == 0 or x == 0 or y == h - 1 or x == w - 1:
                state[p, EXTRA] = k
            else:
                state[p, EXTRA] = -1
                active[n_active] = p
                state[p, SLOT] = n_active
                n_active += 1
            root = p
            for off in offsets:
                q = p + off
                if not added[q]:
                    continue
                other = _find(state, q)
                if other == root:
                    continue
                t_root, t_other = state[root, EXTRA] >= 0, state[other, EXTRA] >= 0
                if t_root != t_other:  # the inner one touches the border from now on
                    inner = other if t_root else root
                    state[inner, EXTRA] = k
                    n_active = _deactivate(active, state, n_active, inner)
                root, gone = _union(state, root, other)
                history[gone] = root
                n_active = _deactivate(active, state, n_active, gone)
        li = want[k]
        if li >= 0:
            hole_count[li] = n_active
            for i in range(n_active):
                r = active[i]
                out = _record(out, n_out, state[r, X0], state[r, Y0], state[r, X1], state[r, Y1], li)
                n_out += 1
    e = np.zeros(n2, np.int32)
    for j in range(order.size):
        p = order[j]
        node = p
        while state[node, EXTRA] < 0:  # the first ancestor whose component touched the border
            node = history[node]
        level = state[node, EXTRA]
        node = p
        while state[node, EXTRA] < 0:  # the ancestors on the way have the same answer: remember it
            state[node, EXTRA] = level
            node = history[node]
        e[p] = level
    return out[:n_out], e, hole_count


@njit(cache=True, nogil=True, inline="always")
def _quad_gain(mask: int) -> int:
    """Twice the 2x2-quad area a pixel adds to a set, given the bits of its 8 neighbours (N, NE, E, ..., NW)
    already in: +1 per quad in which at least two of the other three are in (area 1/2 for 3 pixels, 1 for 4)."""
    gain = 0
    for i in range(0, 8, 2):  # quad of the pixel, edge neighbours i and i + 2 and the corner i + 1
        gain += ((mask >> i) & 1) + ((mask >> (i + 1)) & 1) + ((mask >> ((i + 2) & 7)) & 1) >= 2
    return gain


@njit(cache=True, nogil=True)
def _neighbour_mask(inside: np.ndarray, p: int, ring: np.ndarray) -> int:
    mask = 0
    for i in range(8):
        mask |= np.int64(inside[p + ring[i]]) << i  # branch-free: neighbours are in or out at random
    return mask


@njit(cache=True, nogil=True)
def _quad_statistics(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From the 2x2 quads of ``u`` (outside pixels: -1):

    * ``euler4`` (256,): 4 x the Euler number of ``u > k`` for every ``k`` (8-connected foreground, Gray's
      bit quads: ``#Q1 - #Q3 - 2 #QD``). With a quad's values sorted ``a0 <= a1 <= a2 <= a3`` it is a Q1 for
      ``a2 <= k < a3``, a Q3 for ``a0 <= k < a1`` and a QD for ``a1 <= k < a2`` if its two largest are diagonal;
    * ``quad_level`` (padded grid): per pixel, the largest ``a1`` of its quads: the pixel lies in a quad with
      three or four pixels above ``k`` iff ``quad_level > k``.
    """
    h, w = u.shape
    w2 = w + 2
    pad = np.full((h + 2, w2), -1, np.int32)
    pad[1 : h + 1, 1 : w + 1] = u
    diff = np.zeros(258, np.int64)  # indexed by k + 1 so that -1 fits
    second = np.empty((h + 1, w + 1), np.int32)  # quad (y, x) = padded pixels y..y+1 x x..x+1
    for y in range(h + 1):
        for x in range(w + 1):
            a, b, c, d = pad[y, x], pad[y, x + 1], pad[y + 1, x], pad[y + 1, x + 1]  # a d and b c are diagonal
            lo1, hi1, lo2, hi2 = min(a, d), max(a, d), min(b, c), max(b, c)
            a0, a3 = min(lo1, lo2), max(hi1, hi2)
            a1, a2 = min(max(lo1, lo2), min(hi1, hi2)), max(max(lo1, lo2), min(hi1, hi2))
            second[y, x] = a1
            diff[a2 + 1] += 1  # Q1 on [a2, a3)
            diff[a3 + 1] -= 1
            diff[a0 + 1] -= 1  # Q3 on [a0, a1)
            diff[a1 + 1] += 1
            if lo1 > hi2 or lo2 > hi1:  # the two largest are diagonal: QD on [a1, a2)
                diff[a1 + 1] -= 2
                diff[a2 + 1] += 2
    euler4 = np.cumsum(diff)[1:257]
    quad_level = np.full((h + 2, w2), -1, np.int32)
    for y in range(1, h + 1):
        for x in range(1, w + 1):
            quad_level[y, x] = max(max(second[y - 1, x - 1], second[y - 1, x]), max(second[y, x - 1], second[y, x]))
    return euler4, quad_level.ravel()


@njit(cache=True, nogil=True)
def _descending(
    u: np.ndarray, e: np.ndarray, want: np.ndarray, hole_count: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Max-tree of ``e`` (8-connected filled components) from the top level down.

    Each filled component ``F`` also keeps the smallest ``u`` of its pixels (``F`` holds background at level
    ``k`` iff it is ``<= k``) and the largest *quad level* of its pixels, a pixel's quad level being the
    largest over its four 2x2 quads of the quad's second-smallest value (``F`` has a quad with three or four
    foreground pixels at level ``k``, i.e. a foreground of positive quad area, iff it is ``> k``).

    Returns:
        outer boxes of the filled components, rows ``(x0, y0, x1, y1, level index)``;
        ``largest`` (L, 4): box of the filled component of largest area, -1 where the mask is empty;
        ``needs_order`` (L,): the V1 choice depends on ``findContours``'s order (tie in area with another
        top-level component, or with a hole of a component whose own quad area is 0);
        ``nested`` (L,): some foreground component lies inside a hole, so the outer borders are not all
        borders of filled components (found by the Euler number: components = Euler number + holes).
    """
    h, w = u.shape
    w2 = w + 2
    n2 = (h + 2) * w2
    n_levels = hole_count.size
    order_e, xy_e, start_e = _sorted_pixels(e.reshape(h + 2, w2)[1 : h + 1, 1 : w + 1], w)
    ring = np.array([-w2, -w2 + 1, 1, w2 + 1, w2, w2 - 1, -1, -w2 - 1], np.int64)  # N, NE, E, ..., NW
    inside = np.zeros(n2, np.bool_)
    euler4, quad_level = _quad_statistics(u)
    # EXTRA: twice the contour area of the filled component; MIN_U, MAX_Q3: see above
    state = np.empty((n2, 10), np.int32)
    active = np.empty(n2, np.int32)
    n_active = 0
    out = np.empty((256, 5), np.int64)
    n_out = 0
    largest = np.full((n_levels, 4), -1, np.int64)
    needs_order = np.zeros(n_levels, np.bool_)
    nested = np.zeros(n_levels, np.bool_)
    for k in range(255, -1, -1):
        v = k + 1
        if v <= 255:
            for j in range(start_e[v], start_e[v + 1]):  # the pixels with e = k + 1 join the filled set e > k
                p = order_e[j]
                mask = _neighbour_mask(inside, p, ring)
                _new_node(state, p, xy_e[j, 0], xy_e[j, 1])
                state[p, EXTRA] = _quad_gain(mask)
                state[p, MIN_U] = u[xy_e[j, 1], xy_e[j, 0]]
                state[p, MAX_Q3] = quad_level[p]
                inside[p] = True
                active[n_active] = p
                state[p, SLOT] = n_active
                n_active += 1
                if mask == 0:
                    continue
                # one union per run of consecutive neighbours: consecutive neighbours touch each other
                starts = mask & ~((mask << 1) | (mask >> 7)) & 0xFF
                if starts == 0:  # all eight in
                    starts = 1
                root = p
                for i in range(8):
                    if not (starts >> i) & 1:
                        continue
                    other = _find(state, p + ring[i])
                    if other == root:
                        continue
                    root, gone = _union(state, root, other)
                    state[root, EXTRA] += state[gone, EXTRA]
                    state[root, MIN_U] = min(state[root, MIN_U], state[gone, MIN_U])
                    state[root, MAX_Q3] = max(state[root, MAX_Q3], state[gone, MAX_Q3])
                    n_active = _deactivate(active, state, n_active, gone)
        li = want[k]
        if li < 0:
            continue
        nested[li] = euler4[k] // 4 + hole_count[li] > n_active
        for i in range(n_active):
            r = active[i]
            out = _record(out, n_out, state[r, X0], state[r, Y0], state[r, X1], state[r, Y1], li)
            n_out += 1
        if n_active == 0:
            continue
        best, best_area, ties = -1, -1, 0
        for i in range(n_active):
            r = active[i]
            if state[r, EXTRA] > best_area:
                best, best_area, ties = r, state[r, EXTRA], 1
            elif state[r, EXTRA] == best_area:
                ties += 1
        largest[li, 0], largest[li, 1] = state[best, X0], state[best, Y0]
        largest[li, 2], largest[li, 3] = state[best, X1], state[best, Y1]
        # a hole ties with its component when the component's own quad area is 0 (only without nesting, where
        # the foreground in F is the component itself; nested levels go to findContours anyway)
        holds_background = state[best, MIN_U] <= k
        thin = state[best, MAX_Q3] <= k
        needs_order[li] = ties > 1 or (holds_background and thin)
    return out[:n_out], largest, needs_order, nested


@njit(cache=True, nogil=True)
def group_by_level(rows: np.ndarray, n_levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes grouped by level: ``rows`` (M, 5) ``x0, y0, x1, y1, level`` (level -1: dropped) ->
    ``all_boxes`` (N, 4) and ``offsets`` (L + 1,); a level without boxes gets one ``(0, 0, 0, 0)``."""
    counts = np.zeros(n_levels, np.int64)
    for i in range(rows.shape[0]):
        if rows[i, 4] >= 0:
            counts[rows[i, 4]] += 1
    offsets = np.zeros(n_levels + 1, np.int64)
    for i in range(n_levels):
        offsets[i + 1] = offsets[i] + max(counts[i], 1)
    all_boxes = np.zeros((offsets[n_levels], 4), np.int64)
    fill = offsets[:n_levels].copy()
    for i in range(rows.shape[0]):
        level = rows[i, 4]
        if level >= 0:
            all_boxes[fill[level], :] = rows[i, :4]
            fill[level] += 1
    return all_boxes, offsets


def tree_level_boxes(
    u8: np.ndarray, levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """wsolevaluation boxes of the contours of ``u8 > level`` for each level, from component trees.

    Boxes are ``boundingRect``'s ``(x, y, x + w, y + h)`` with ``x + w`` clipped to ``W - 1`` (``H - 1``).

    Args:
        u8: ``(H, W)`` uint8 map.
        levels: ``(L,)`` int cuts in ``0..255``, distinct.

    Returns:
        ``rows`` (M, 5) int64: every contour's box and its level index (outer borders, then hole borders);
        ``largest`` (L, 4): the V1 box, the filled component of largest contour area (0s when empty);
        ``needs_order`` (L,) bool: levels where the V1 choice depends on ``findContours``'s contour order;
        ``nested`` (L,) bool: levels with a component inside a hole, whose outer border is missing from
        ``rows`` (ask ``findContours`` for these levels).
    """
    u = np.ascontiguousarray(u8, dtype=np.uint8)
    height, width = u.shape
    levels = np.asarray(levels, dtype=np.int64)
    if levels.size and (levels.min() < 0 or levels.max() > 255 or np.unique(levels).size != levels.size):
        raise ValueError(f"levels must be distinct cuts in 0..255, got {levels.tolist()}")
    want = np.full(256, -1, np.int64)
    want[levels] = np.arange(len(levels))
    holes, e, hole_count = _ascending(u, want, len(levels))
    outer, largest, needs_order, nested = _descending(u, e, want, hole_count)
    holes[:, :4] += np.array([-1, -1, 1, 1], dtype=np.int64)  # the hole border runs around the hole
    rows = np.concatenate([outer, holes])
    limit = np.array([width - 1, height - 1])
    rows[:, 2:4] = np.minimum(rows[:, 2:4] + 1, limit)  # x + w is the last pixel + 1
    empty = largest[:, 0] < 0
    largest[:, 2:] = np.minimum(largest[:, 2:] + 1, limit)
    largest[empty] = 0
    return rows, largest, needs_order, nested
