"""Zones and lines, per camera: what the operator writes in ``pipeline.toml``,
checked, and what the tracked objects do in them.

::

    [cameras.door.zones.hall]        # a polygon: who is in it, for how long
    points = [[100, 300], [540, 300], [540, 470], [100, 470]]
    classes = ["person"]             # [] (the default): every class
    loiter_s = 20                    # a "loiter" event after 20 s inside (0: never)
    anchor = "bottom-center"         # the point of a box that must be inside

    [cameras.door.lines.door]        # a line: who crosses it, which way
    points = [[320, 100], [320, 470]]  # drawn top to bottom: "in" is rightwards

A line's direction: "in" is the way its first-to-second-point arrow points
when turned a quarter turn anticlockwise as you look at the picture -- drawn
top to bottom, "in" is rightwards; drawn left to right, "in" is upwards.
Swap the two points to swap "in" and "out".

Points are pixels of the frame as the camera delivers it (``width`` x
``height``). Names follow the label rule (``[A-Za-z0-9_-]``, 1 to 40): they
become MQTT topics and Home Assistant ids.
"""

import re
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from vidpipe import names
from vidpipe.analytics.geometry import ANCHORS, Point, collinear, segments_cross, self_crossing

NAME_RE = re.compile(r"\A" + names.LABEL_RULE + r"\Z")  # the label rule
MAX_POINTS = 64
MAX_AREAS = 32  # zones and lines each, per camera
ZONE_KEYS = ("points", "classes", "loiter_s", "anchor")
LINE_KEYS = ("points", "classes", "anchor")


class AreaError(ValueError):
    """What is wrong, and under which key (relative to the camera's section)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


@dataclass(frozen=True)
class Zone:
    name: str
    points: Tuple[Point, ...]
    classes: Tuple[str, ...] = ()
    loiter_s: float = 0.0
    anchor: str = "bottom-center"


@dataclass(frozen=True)
class Line:
    name: str
    a: Point
    b: Point
    classes: Tuple[str, ...] = ()
    anchor: str = "bottom-center"


def parse(raw_zones: Any, raw_lines: Any, width: int,
          height: int) -> Tuple[Dict[str, Zone], Dict[str, Line]]:
    """The camera's ``zones`` and ``lines`` tables, checked against a frame of
    ``width`` x ``height``; :class:`AreaError` names the first thing wrong."""
    zones = {name: _zone(name, raw, width, height)
             for name, raw in _tables("zones", raw_zones).items()}
    lines = {name: _line(name, raw, width, height)
             for name, raw in _tables("lines", raw_lines).items()}
    return zones, lines


def _tables(kind: str, raw: Any) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise AreaError(kind, "must be a table of named {} ([cameras.NAME.{}.NAME]), "
                        "got {!r}".format(kind, kind, raw))
    if len(raw) > MAX_AREAS:
        raise AreaError(kind, "at most {} {} a camera, got {}".format(MAX_AREAS, kind, len(raw)))
    for name, table in raw.items():
        if not NAME_RE.match(name):
            raise AreaError("{}.{}".format(kind, name), "a name of 1 to 40 letters, digits, "
                            "'_' or '-' (it becomes an MQTT topic)")
        if not isinstance(table, Mapping):
            raise AreaError("{}.{}".format(kind, name), "must be a table, got {!r}".format(table))
    return raw


def _common(key: str, raw: Mapping[str, Any], allowed: Sequence[str]) -> Tuple[Tuple[str, ...],
                                                                               str]:
    for k in raw:
        if k not in allowed:
            raise AreaError("{}.{}".format(key, k), "unknown key; allowed keys: {}".format(
                ", ".join(allowed)))
    classes = raw.get("classes", [])
    if not isinstance(classes, list) or not all(isinstance(c, str) and c for c in classes):
        raise AreaError(key + ".classes", "must be a list of class names (as the labels "
                        "file or the stage names them), got {!r}".format(classes))
    anchor = raw.get("anchor", "bottom-center")
    if anchor not in ANCHORS:
        raise AreaError(key + ".anchor", "must be one of {}, got {!r}".format(
            ", ".join(repr(a) for a in ANCHORS), anchor))
    return tuple(classes), anchor


def _points(key: str, raw: Any, width: int, height: int) -> List[Point]:
    if not isinstance(raw, list):
        raise AreaError(key, "must be a list of [x, y] points, got {!r}".format(raw))
    if len(raw) > MAX_POINTS:
        raise AreaError(key, "at most {} points, got {}".format(MAX_POINTS, len(raw)))
    points = []
    for i, p in enumerate(raw):
        if not (isinstance(p, list) and len(p) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)):
            raise AreaError("{}[{}]".format(key, i), "must be [x, y] in pixels, got {!r}"
                            .format(p))
        x, y = float(p[0]), float(p[1])
        if not (0 <= x <= width and 0 <= y <= height):
            raise AreaError("{}[{}]".format(key, i), "[{:g}, {:g}] is outside the {}x{} frame "
                            "(the camera's width and height)".format(x, y, width, height))
        points.append((x, y))
    return points


def _zone(name: str, raw: Mapping[str, Any], width: int, height: int) -> Zone:
    key = "zones." + name
    classes, anchor = _common(key, raw, ZONE_KEYS)
    if "points" not in raw:
        raise AreaError(key + ".points", "missing: a zone is a polygon of at least 3 points")
    points = _points(key + ".points", raw["points"], width, height)
    if len(points) < 3:
        raise AreaError(key + ".points", "a zone needs at least 3 points, got {}".format(
            len(points)))
    if collinear(points):
        raise AreaError(key + ".points", "the points lie on one line: the zone has no area")
    i, j = self_crossing(points)
    if i >= 0:
        raise AreaError(key + ".points", "the polygon crosses itself: its edge from point {} "
                        "and its edge from point {} meet (list the points in order around "
                        "the zone)".format(i, j))
    loiter = raw.get("loiter_s", 0.0)
    if not isinstance(loiter, (int, float)) or isinstance(loiter, bool) or \
            not 0 <= loiter <= 86400:
        raise AreaError(key + ".loiter_s", "must be a number of seconds from 0 (never) to "
                        "86400, got {!r}".format(loiter))
    return Zone(name, tuple(points), classes, float(loiter), anchor)


def _line(name: str, raw: Mapping[str, Any], width: int, height: int) -> Line:
    key = "lines." + name
    classes, anchor = _common(key, raw, LINE_KEYS)
    if "points" not in raw:
        raise AreaError(key + ".points", "missing: a line is two points [[x1, y1], [x2, y2]]")
    points = _points(key + ".points", raw["points"], width, height)
    if len(points) != 2:
        raise AreaError(key + ".points", "a line is exactly two points, got {}".format(
            len(points)))
    if points[0] == points[1]:
        raise AreaError(key + ".points", "the two points are the same: a line needs two "
                        "distinct points")
    return Line(name, points[0], points[1], classes, anchor)


# --------------------------------------------------------------------------
# Counting


@dataclass
class _Visit:
    since_ns: int
    loitered: bool = False


@dataclass
class _Where:
    """One track's last known place: per line the last point off it, per
    zone the visit under way."""
    label: str
    off_line: Dict[str, Tuple[Point, float]] = field(default_factory=dict)
    visits: Dict[str, _Visit] = field(default_factory=dict)


class Areas:
    """One camera's zones and lines, fed the tracks of each frame in order.
    Keeps the counts (:meth:`counts`) and returns the events of each frame."""

    def __init__(self, zones: Mapping[str, Zone], lines: Mapping[str, Line]) -> None:
        self.zones = dict(zones)
        self.lines = dict(lines)
        self.where: Dict[int, _Where] = {}
        self.crossed: Dict[Tuple[str, str, str], int] = {}  # (line, label, in|out) -> count
        self.entered: Dict[Tuple[str, str], int] = {}  # (zone, label) -> count

    def update(self, tracks: Sequence[Any], removed: Sequence[Any],
               capture_ns: int) -> List[Dict[str, Any]]:
        """``tracks``: the tracks seen in this frame (``id``, ``label``,
        ``box``); ``removed``: those the tracker let go. The zone and line
        events of this frame. Each area tests every track's anchor at once
        (arrays); only a track whose side or inside changed costs Python."""
        events: List[Dict[str, Any]] = []
        if tracks:
            wheres = [self.where.get(t.id) or self.where.setdefault(t.id, _Where(t.label))
                      for t in tracks]
            boxes = np.array([t.box for t in tracks], dtype=float)
            labels = np.array([t.label for t in tracks])
            for line in self.lines.values():
                self._lines(line, tracks, wheres, _anchors(boxes, line.anchor),
                            _wanted(labels, line.classes), events)
            for zone in self.zones.values():
                self._zones(zone, tracks, wheres, _anchors(boxes, zone.anchor),
                            _wanted(labels, zone.classes), capture_ns, events)
        for t in removed:
            where = self.where.pop(t.id, None)
            if where is None:
                continue
            for name, visit in sorted(where.visits.items()):
                events.append(_zone_event(name, "exit", t.id, where.label, visit, capture_ns,
                                          lost=True))
        return events

    def _lines(self, line: Line, tracks: Sequence[Any], wheres: List[_Where],
               points: np.ndarray, wanted: np.ndarray, events: List[Dict[str, Any]]) -> None:
        (ax, ay), (bx, by) = line.a, line.b
        sides = (bx - ax) * (points[:, 1] - ay) - (by - ay) * (points[:, 0] - ax)
        last = np.array([w.off_line.get(line.name, (None, 0.0))[1] for w in wheres])
        # off the line now, and on the other side than last time: maybe a crossing
        for i in np.nonzero(wanted & (sides != 0) & (last * sides < 0))[0]:
            t, p = tracks[i], (float(points[i, 0]), float(points[i, 1]))
            if not segments_cross(wheres[i].off_line[line.name][0], p, line.a, line.b):
                continue
            # side() > 0 is the arrow's right as seen from its first point (y
            # down): for an arrow pointing down that is the picture's left, so
            # leaving it for the other side is moving rightwards: "in"
            direction = "in" if sides[i] < 0 else "out"
            key = (line.name, t.label, direction)
            self.crossed[key] = self.crossed.get(key, 0) + 1
            events.append({"type": "line", "line": line.name, "direction": direction,
                           "track": t.id, "label": t.label})
        for i in np.nonzero(wanted & (sides != 0))[0]:  # on the line: wait to see where it goes
            wheres[i].off_line[line.name] = ((float(points[i, 0]), float(points[i, 1])),
                                             float(sides[i]))

    def _zones(self, zone: Zone, tracks: Sequence[Any], wheres: List[_Where],
               points: np.ndarray, wanted: np.ndarray, capture_ns: int,
               events: List[Dict[str, Any]]) -> None:
        now_in = wanted & _inside(zone.points, points)
        was_in = np.array([zone.name in w.visits for w in wheres])
        for i in np.nonzero(now_in & ~was_in)[0]:
            t = tracks[i]
            visit = wheres[i].visits[zone.name] = _Visit(capture_ns)
            key = (zone.name, t.label)
            self.entered[key] = self.entered.get(key, 0) + 1
            events.append(_zone_event(zone.name, "enter", t.id, t.label, visit, capture_ns))
        if zone.loiter_s:
            for i in np.nonzero(now_in & was_in)[0]:
                visit = wheres[i].visits[zone.name]
                if not visit.loitered and capture_ns - visit.since_ns >= zone.loiter_s * 1e9:
                    visit.loitered = True
                    events.append(_zone_event(zone.name, "loiter", tracks[i].id,
                                              tracks[i].label, visit, capture_ns))
        for i in np.nonzero(~now_in & was_in)[0]:
            visit = wheres[i].visits.pop(zone.name)
            events.append(_zone_event(zone.name, "exit", tracks[i].id, tracks[i].label, visit,
                                      capture_ns))

    def occupancy(self) -> Dict[Tuple[str, str], int]:
        """(zone, label) -> how many tracked objects are in it now."""
        out: Dict[Tuple[str, str], int] = {}
        for where in self.where.values():
            for name in where.visits:
                out[(name, where.label)] = out.get((name, where.label), 0) + 1
        return out

    def zones_of(self, track_id: int) -> List[str]:
        where = self.where.get(track_id)
        return sorted(where.visits) if where else []

    def counts(self) -> Dict[str, Any]:
        """Everything counted so far, as ``/metrics`` and the state message show it."""
        return {"zones": {z: {"occupancy": _by_label(self.occupancy(), z),
                              "entered": _by_label(self.entered, z)} for z in self.zones},
                "lines": {n: {d: {lab: c for (ln, lab, dd), c in sorted(self.crossed.items())
                                  if ln == n and dd == d} for d in ("in", "out")}
                          for n in self.lines}}


def _anchors(boxes: np.ndarray, anchor: str) -> np.ndarray:
    """:func:`geometry.anchor_point` of every box ``[x, y, w, h]`` at once."""
    fx = {"bottom-left": 0.0, "bottom-right": 1.0}.get(anchor, 0.5)
    fy = {"center": 0.5, "top-center": 0.0}.get(anchor, 1.0)
    return np.column_stack([boxes[:, 0] + fx * boxes[:, 2], boxes[:, 1] + fy * boxes[:, 3]])


def _wanted(labels: np.ndarray, classes: Tuple[str, ...]) -> np.ndarray:
    return np.isin(labels, classes) if classes else np.ones(len(labels), dtype=bool)


def _inside(polygon: Sequence[Point], points: np.ndarray) -> np.ndarray:
    """:func:`geometry.inside` of many points at once (even-odd rule, the
    border inside)."""
    x, y = points[:, 0], points[:, 1]
    result = np.zeros(len(points), dtype=bool)
    border = np.zeros(len(points), dtype=bool)
    n = len(polygon)
    for k in range(n):
        (ax, ay), (bx, by) = polygon[k], polygon[(k + 1) % n]
        cross = (bx - ax) * (y - ay) - (by - ay) * (x - ax)
        border |= (cross == 0) & (np.minimum(ax, bx) <= x) & (x <= np.maximum(ax, bx)) & \
            (np.minimum(ay, by) <= y) & (y <= np.maximum(ay, by))
        if ay == by:
            continue
        spans = (ay > y) != (by > y)
        at = ax + (y - ay) * (bx - ax) / (by - ay)
        result ^= spans & (x < at)
    return result | border


def _by_label(counts: Mapping[Tuple[str, str], int], zone: str) -> Dict[str, int]:
    return {label: c for (z, label), c in sorted(counts.items()) if z == zone}


def _zone_event(zone: str, action: str, track: int, label: str, visit: _Visit,
                capture_ns: int, lost: bool = False) -> Dict[str, Any]:
    event: Dict[str, Any] = {"type": "zone", "zone": zone, "action": action, "track": track,
                             "label": label,
                             "dwell_s": round((capture_ns - visit.since_ns) / 1e9, 3)}
    if lost:
        event["lost"] = True  # the object was not seen again: it left unseen
    return event


def check_frame(zones: Mapping[str, Zone], lines: Mapping[str, Line], width: int,
                height: int) -> Optional[str]:
    """What of the areas lies outside a frame of this size (a stream that
    came at another size than configured), for a warning; ``None`` if all fits."""
    for zone in zones.values():
        for x, y in zone.points:
            if x > width or y > height:
                return "zone {} reaches [{:g}, {:g}], outside the {}x{} frames".format(
                    zone.name, x, y, width, height)
    for line in lines.values():
        for x, y in (line.a, line.b):
            if x > width or y > height:
                return "line {} reaches [{:g}, {:g}], outside the {}x{} frames".format(
                    line.name, x, y, width, height)
    return None
