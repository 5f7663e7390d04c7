"""The geometry of :mod:`vidpipe.analytics.geometry` for many points at once
(NumPy): every track against every zone and line of a camera in one step."""

from typing import Sequence, Tuple

import numpy as np

from vidpipe.analytics.geometry import Point


def anchors(boxes: np.ndarray, anchor: str) -> np.ndarray:
    """:func:`~vidpipe.analytics.geometry.anchor_point` of every box
    ``[x, y, w, h]`` at once."""
    fx = {"bottom-left": 0.0, "bottom-right": 1.0}.get(anchor, 0.5)
    fy = {"center": 0.5, "top-center": 0.0}.get(anchor, 1.0)
    return np.column_stack([boxes[:, 0] + fx * boxes[:, 2], boxes[:, 1] + fy * boxes[:, 3]])


def edges(polygons: Sequence[Sequence[Point]]) -> Tuple[np.ndarray, ...]:
    """The edges of ``polygons`` as arrays (one element an edge, polygon
    after polygon) and where each polygon's edges start, for
    :func:`inside_edges`."""
    a = np.concatenate([np.array(p, dtype=float) for p in polygons])
    b = np.concatenate([np.roll(np.array(p, dtype=float), -1, axis=0) for p in polygons])
    starts = np.cumsum([0] + [len(p) for p in polygons[:-1]]).astype(np.int64)
    ax, ay, bx, by = a[:, 0], a[:, 1], b[:, 0], b[:, 1]
    slanted = ay != by  # a level edge is never crossed by a level ray
    return (ax, ay, bx, by, bx - ax, by - ay, np.minimum(ax, bx), np.maximum(ax, bx),
            np.minimum(ay, by), np.maximum(ay, by), slanted, np.where(slanted, by - ay, 1.0),
            starts)


def inside(polygon: Sequence[Point], points: np.ndarray) -> np.ndarray:
    """:func:`~vidpipe.analytics.geometry.inside` of many points at once
    (even-odd rule, the border inside)."""
    found = edges([polygon])
    return inside_edges(found, np.repeat(points[:, None], len(found[0]), axis=1))[:, 0]


def inside_edges(arrays: Tuple[np.ndarray, ...], points: np.ndarray) -> np.ndarray:
    """Points x polygons: whether each point is inside each polygon of
    ``arrays`` (:func:`edges`). ``points`` is points x edges x 2: the point
    each edge is tested with (the track's anchor point for that edge's zone)."""
    ax, ay, bx, by, dx, dy, x0, x1, y0, y1, slanted, rise, starts = arrays
    x, y = points[:, :, 0], points[:, :, 1]  # every point against every edge
    below = y - ay
    spans = slanted & ((ay > y) != (by > y))
    hits = spans & (x < ax + below * dx / rise)
    found = np.add.reduceat(hits, starts, axis=1, dtype=np.int64) % 2 == 1
    on = dx * below - dy * (x - ax) == 0  # on an edge's line: on the edge itself?
    if on.any():
        border = on & (x0 <= x) & (x <= x1) & (y0 <= y) & (y <= y1)
        found |= np.add.reduceat(border, starts, axis=1, dtype=np.int64) > 0
    return found
