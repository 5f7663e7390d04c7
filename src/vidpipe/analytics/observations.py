"""What the stages found, read one way: the observation schema.

Stages write what they found into a result's metadata, each under its own key:

* ``detections`` (``dnn``, plugins): a list of ``{"box": [x, y, w, h],
  "label": name or class number, "confidence": 0..1}``;
* ``faces`` (``faces``): a list of boxes ``[x, y, w, h]``;
* ``motion`` (``motion``): ``{"boxes": [[x, y, w, h], ...], "fraction": the
  share of the picture that moved}``.

Boxes are in pixels of the frame the handler got. :func:`observations` reads
all three as one list of :class:`Observation`; the object tracker
(:mod:`.scene`), the broker outputs' events (:mod:`vidpipe.outputs.events`)
and the preview (:mod:`vidpipe.outputs.preview`) read them from here, so a
new stage that writes ``detections`` is seen by all of them alike.

The metadata crossed the wire: anything malformed (a box that is not four
finite numbers of positive size, a detection without one) is left out, and
every label is brought to the label rule (:func:`vidpipe.names.label`)
before it can reach a topic, a routing key or an event id.
"""

from typing import Any, Dict, List, Mapping, NamedTuple, Tuple

from vidpipe import names

Box = Tuple[float, float, float, float]  # x, y, w, h in pixels

_NUMBERS = frozenset((int, float))  # exactly: a bool is not a number here
MAX_REMEMBERED = 1024  # labels whose rule form is kept
_LABELS: Dict[str, str] = {}
#: Observation.kind, by the key the stage wrote
DETECTION, FACE, MOTION = "detection", "face", "motion"


class Observation(NamedTuple):
    box: Box     # the numbers as the stage wrote them (ints stay ints)
    label: str   # of the label rule; "face" and "motion" for those stages
    score: float  # a detection's confidence (1.0 if it gave none); a face 1.0;
    #               motion: the share of the picture that moved
    kind: str    # DETECTION, FACE or MOTION


def observations(meta: Mapping[str, Any]) -> List[Observation]:
    """Everything ``meta`` says was found: detections, then faces, then motion."""
    out: List[Observation] = []
    detections = meta.get("detections")
    if type(detections) is list:
        for d in detections:
            if type(d) is dict and is_box(d.get("box")):
                score = d.get("confidence", 1.0)
                out.append(Observation(tuple(d["box"]), _label(d.get("label")),  # type: ignore
                                       float(score) if is_number(score) else 1.0, DETECTION))
    faces = meta.get("faces")
    if type(faces) is list:
        out.extend(Observation(tuple(b), "face", 1.0, FACE)  # type: ignore[arg-type]
                   for b in faces if is_box(b))
    motion = meta.get("motion")
    if type(motion) is dict and type(motion.get("boxes")) is list:
        fraction = motion.get("fraction", 0.0)
        moved = float(fraction) if is_number(fraction) else 0.0
        out.extend(Observation(tuple(b), "motion", moved, MOTION)  # type: ignore[arg-type]
                   for b in motion["boxes"] if is_box(b))
    return out


def _label(raw: object) -> str:
    """:func:`vidpipe.names.label`, remembered for the labels a model keeps
    using (a frame of 50 detections asks 50 times); bounded, as labels come
    off the wire."""
    if type(raw) is not str:
        return names.label(raw)
    known = _LABELS.get(raw)  # type: ignore[call-overload]
    if known is None:
        known = names.label(raw)
        if len(_LABELS) >= MAX_REMEMBERED:
            _LABELS.clear()
        _LABELS[raw] = known  # type: ignore[index]
    return known


def is_number(v: object) -> bool:
    """A finite int or float of sane size (not a bool: ``type`` is exact)."""
    return (type(v) is float or type(v) is int) and -1e9 < v < 1e9  # type: ignore[operator]


def is_box(b: object) -> bool:
    """Four finite numbers, positive width and height."""
    if (type(b) is not list and type(b) is not tuple) or len(b) != 4:  # type: ignore[arg-type]
        return False
    x, y, w, h = b  # type: ignore[misc]
    return type(x) in _NUMBERS and type(y) in _NUMBERS and type(w) in _NUMBERS and \
        type(h) in _NUMBERS and -1e9 < x < 1e9 and -1e9 < y < 1e9 and 0 < w < 1e9 and \
        0 < h < 1e9
