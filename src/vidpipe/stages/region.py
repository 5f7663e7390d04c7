"""``detect_when = "motion-region"``: a detector looks only at the part of
the frame around what the motion stage saw move.

The region is the box around every motion box of the frame, grown by half
its size on each side (a person whose legs moved is found whole) and to at
least :data:`MIN_SIDE` pixels a side (a detector's window fits), inside the
frame. The detector runs on that crop (a view of the frame's pixels: no
copy) as on a frame of its own; the boxes it finds (``detections``,
``faces``: the observation schema) are moved back into the frame's pixels,
and ``meta["detect_region"]`` says where it looked. A region of most of the
frame (:data:`WHOLE`), or an I420 frame (its planes do not crop as one
array), is the whole frame.
"""

from typing import Any, Dict, Optional, Tuple

from vidpipe.analytics.observations import is_box
from vidpipe.stages.base import I420, Frame, Stage, add_detections

MIN_SIDE = 128  # pixels: HOG's 64x128 person window, a face at several scales
WHOLE = 0.6  # a region of this share of the frame or more: look at all of it

Region = Tuple[int, int, int, int]  # x, y, w, h in the frame's pixels


def motion_region(frame: Frame) -> Optional[Region]:
    """Where to look, or ``None`` for the whole frame."""
    motion = frame.meta.get("motion")
    found = [b for b in motion.get("boxes") or [] if is_box(b)] \
        if isinstance(motion, dict) and isinstance(motion.get("boxes"), list) else []
    if not found or frame.format == I420:
        return None
    height, width = frame.size()
    x0 = min(b[0] for b in found)
    y0 = min(b[1] for b in found)
    x1 = max(b[0] + b[2] for b in found)
    y1 = max(b[1] + b[3] for b in found)
    x0, x1 = _grow(x0, x1, width)
    y0, y1 = _grow(y0, y1, height)
    if (x1 - x0) * (y1 - y0) >= WHOLE * width * height:
        return None
    return x0, y0, x1 - x0, y1 - y0


def _grow(low: float, high: float, limit: int) -> Tuple[int, int]:
    """One side of the region: half its size more each way, at least
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


def run_in_region(stage: Stage, frame: Frame, region: Region) -> None:
    """``stage.process`` on the crop ``region`` of ``frame``; what it found
    goes into ``frame.meta`` in the frame's pixels."""
    x, y, w, h = region
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
    frame.meta["detect_region"] = [x, y, w, h]


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

