"""Plane geometry in picture coordinates (x right, y down, pixels)."""

from typing import Sequence, Tuple

Point = Tuple[float, float]

#: where on a box ``[x, y, w, h]`` an object stands, for zones and lines:
#: a person's feet (bottom-center) are what crosses a door line
ANCHORS = ("bottom-center", "center", "top-center", "bottom-left", "bottom-right")


def anchor_point(box: Sequence[float], anchor: str = "bottom-center") -> Point:
    x, y, w, h = (float(v) for v in box[:4])
    if anchor == "center":
        return x + w / 2, y + h / 2
    if anchor == "top-center":
        return x + w / 2, y
    if anchor == "bottom-left":
        return x, y + h
    if anchor == "bottom-right":
        return x + w, y + h
    return x + w / 2, y + h


def side(a: Point, b: Point, p: Point) -> float:
    """Which side of the line from ``a`` to ``b`` the point ``p`` is on: > 0
    on its right as seen from ``a`` looking at ``b`` in the picture (y down),
    < 0 on its left, 0 on it."""
    return (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])


def segments_cross(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """Whether the segments p1-p2 and q1-q2 cross or touch."""
    d1, d2 = side(q1, q2, p1), side(q1, q2, p2)
    d3, d4 = side(p1, p2, q1), side(p1, p2, q2)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return (d1 == 0 and _on(q1, q2, p1)) or (d2 == 0 and _on(q1, q2, p2)) or \
        (d3 == 0 and _on(p1, p2, q1)) or (d4 == 0 and _on(p1, p2, q2))


def _on(a: Point, b: Point, p: Point) -> bool:
    """``p``, already on the line through a and b, lies within the segment."""
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and \
        min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def inside(polygon: Sequence[Point], p: Point) -> bool:
    """Whether ``p`` is inside ``polygon`` (even-odd rule; a point on an edge
    counts as inside, so an object standing on a zone's border is in it)."""
    n = len(polygon)
    result = False
    for i in range(n):
        a, b = polygon[i], polygon[(i + 1) % n]
        if side(a, b, p) == 0 and _on(a, b, p):
            return True
        if (a[1] > p[1]) != (b[1] > p[1]):
            x = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1])
            if p[0] < x:
                result = not result
    return result


def self_crossing(polygon: Sequence[Point]) -> Tuple[int, int]:
    """The first two edges (by index, edge i runs from point i to point i+1)
    of ``polygon`` that cross, or ``(-1, -1)`` when none do. Neighbouring
    edges share a point and are not counted unless they fold back."""
    n = len(polygon)
    for i in range(n):
        a1, a2 = polygon[i], polygon[(i + 1) % n]
        for j in range(i + 1, n):
            b1, b2 = polygon[j], polygon[(j + 1) % n]
            if j == i + 1 or (i == 0 and j == n - 1):  # neighbours: share one point
                shared = a2 if j == i + 1 else a1
                other_a = a1 if j == i + 1 else a2
                other_b = b2 if j == i + 1 else b1
                if side(shared, other_a, other_b) == 0 and _folds(shared, other_a, other_b):
                    return i, j
                continue
            if segments_cross(a1, a2, b1, b2):
                return i, j
    return -1, -1


def _folds(shared: Point, a: Point, b: Point) -> bool:
    """Two collinear edges from ``shared`` overlap (point the same way)."""
    return (a[0] - shared[0]) * (b[0] - shared[0]) + (a[1] - shared[1]) * (b[1] - shared[1]) > 0


def area(polygon: Sequence[Point]) -> float:
    """The polygon's area (shoelace formula; positive whatever the winding)."""
    n = len(polygon)
    total = 0.0
    for i in range(n):
        a, b = polygon[i], polygon[(i + 1) % n]
        total += a[0] * b[1] - b[0] * a[1]
    return abs(total) / 2.0


def collinear(points: Sequence[Point]) -> bool:
    """All the points lie on one line (or are one point): no area."""
    other = next((p for p in points if p != points[0]), None)
    return other is None or all(side(points[0], other, p) == 0 for p in points)
