"""``detect_when = "motion-region"``: a detector looks only at the parts of
the frame around what the motion stage saw move.

Each motion box is grown by half its size on each side (a person whose legs
moved is found whole) and to at least :data:`MIN_SIDE` pixels a side (a
detector's window fits), inside the frame; grown boxes that overlap become
the box around them, until none overlap. So two people far apart are two
small regions, not one large one. More than :data:`MAX_REGIONS` places are
joined, those whose joining adds least area first. The detector runs on each
region's crop (a view of the frame's pixels: no copy) as on a frame of its
own; the boxes it finds (``detections``, ``faces``: the observation schema)
are moved back into the frame's pixels, and ``meta["detect_regions"]`` says
where it looked. Regions covering most of the frame together
(:data:`WHOLE`), or an I420 frame (its planes do not crop as one array),
mean the whole frame.
"""

from typing import Any, Dict, List, Optional, Tuple

from vidpipe.analytics.observations import is_box
from vidpipe.stages.base import I420, Frame, Stage, add_detections

MIN_SIDE = 128  # pixels: HOG's 64x128 person window, a face at several scales
WHOLE = 0.6  # regions of this share of the frame or more: look at all of it
MAX_REGIONS = 4  # a detector run per region: more places than this are joined
MAX_BOXES = 64  # more motion boxes than this (noise, rain): the box around them all

Region = Tuple[int, int, int, int]  # x, y, w, h in the frame's pixels
Corners = Tuple[int, int, int, int]  # x0, y0, x1, y1


def motion_regions(frame: Frame) -> Optional[List[Region]]:
    """Where to look, or ``None`` for the whole frame."""
    motion = frame.meta.get("motion")
    found = [b for b in motion.get("boxes") or [] if is_box(b)] \
        if isinstance(motion, dict) and isinstance(motion.get("boxes"), list) else []
    if not found or frame.format == I420:
        return None
    height, width = frame.size()
    if len(found) > MAX_BOXES:
        found = [[min(b[0] for b in found), min(b[1] for b in found),
                  max(b[0] + b[2] for b in found) - min(b[0] for b in found),
                  max(b[1] + b[3] for b in found) - min(b[1] for b in found)]]
    places = _joined([_grown(b, width, height) for b in found])
    if sum(_area(p) for p in places) >= WHOLE * width * height:
        return None
    return [(x0, y0, x1 - x0, y1 - y0) for x0, y0, x1, y1 in sorted(places)]


def _grown(box: Any, width: int, height: int) -> Corners:
    x0, x1 = _grow(box[0], box[0] + box[2], width)
    y0, y1 = _grow(box[1], box[1] + box[3], height)
    return x0, y0, x1, y1


def _grow(low: float, high: float, limit: int) -> Tuple[int, int]:
    """One side of a region: half its size more each way, at least
    MIN_SIDE, inside 0..limit (shifted, not cut, at the frame's edge)."""
    side = high - low
    low, high = low - side / 2, high + side / 2
    if high - low < MIN_SIDE:
        middle = (low + high) / 2
        low, high = middle - MIN_SIDE / 2, middle + MIN_SIDE / 2
    if low < 0:
        low, high = 0, high - low
    if high > limit:
        low, high = low - (high - limit), limit
    return max(0, int(low)), min(limit, int(round(high)))


def _area(c: Corners) -> int:
    return (c[2] - c[0]) * (c[3] - c[1])


def _union(a: Corners, b: Corners) -> Corners:
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


def _overlap(a: Corners, b: Corners) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _joined(places: List[Corners]) -> List[Corners]:
    """No two overlapping, at most MAX_REGIONS."""
    places = list(places)
    while True:
        pair = next(((i, j) for i in range(len(places)) for j in range(i + 1, len(places))
                     if _overlap(places[i], places[j])), None)
        if pair is None and len(places) > MAX_REGIONS:  # the join that adds least area
            pair = min(((i, j) for i in range(len(places)) for j in range(i + 1, len(places))),
                       key=lambda p: _area(_union(places[p[0]], places[p[1]]))
                       - _area(places[p[0]]) - _area(places[p[1]]))
        if pair is None:
            return places
        i, j = pair
        places[i] = _union(places[i], places[j])
        del places[j]


def run_in_regions(stage: Stage, frame: Frame, regions: List[Region]) -> None:
    """``stage.process`` on the crop of each of ``regions`` of ``frame``;
    what it found goes into ``frame.meta`` in the frame's pixels (a plugin's
    own keys: as the last region left them)."""
    for x, y, w, h in regions:
        crop = Frame(frame.camera, frame.seq, frame.capture_ns, frame.image[y:y + h, x:x + w],
                     format=frame.format)
        stage.process(crop)
        for key, value in crop.meta.items():
            if key == "detections" and isinstance(value, list):
                add_detections(frame, [_moved_detection(d, x, y) for d in value])
            elif key == "faces" and isinstance(value, list):
                known = frame.meta.get("faces")
                moved = [_moved(b, x, y) for b in value]
                frame.meta["faces"] = known + moved if isinstance(known, list) else moved
            else:  # a plugin's own keys, as it wrote them
                frame.meta[key] = value
    frame.meta["detect_regions"] = [list(r) for r in regions]


def _moved(box: Any, x: int, y: int) -> Any:
    if not is_box(box):
        return box  # left as it is: the collector leaves out what is not a box
    return [box[0] + x, box[1] + y, box[2], box[3]]


def _moved_detection(found: Any, x: int, y: int) -> Any:
    if isinstance(found, dict) and "box" in found:
        moved: Dict[str, Any] = dict(found)
        moved["box"] = _moved(found["box"], x, y)
        return moved
    return found

