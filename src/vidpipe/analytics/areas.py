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
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from vidpipe import names
from vidpipe.analytics import arrays
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


class Areas:
    """One camera's zones and lines, fed the tracks of each frame in order.
    Keeps the counts (:meth:`counts`) and returns the events of each frame.

    What it remembers of each track (per line the last point off it and its
    side, per zone whether it is inside, since when, whether it loitered) is
    a row of arrays, so each area tests every track at once; only a track
    whose side or inside changed costs Python."""

    def __init__(self, zones: Mapping[str, Zone], lines: Mapping[str, Line]) -> None:
        self.zones = dict(zones)
        self.lines = dict(lines)
        self.crossed: Dict[Tuple[str, str, str], int] = {}  # (line, label, in|out) -> count
        self.entered: Dict[Tuple[str, str], int] = {}  # (zone, label) -> count
        # every area's anchor as an index into the anchors in use; every zone's
        # edges in one set of arrays (one test of all tracks against all zones)
        self._anchor_names = sorted({a.anchor for a in list(self.zones.values())
                                     + list(self.lines.values())})
        self._edges = arrays.edges([z.points for z in self.zones.values()]) if self.zones else None
        self._edge_anchor = np.repeat(
            [self._anchor_names.index(z.anchor) for z in self.zones.values()],
            [len(z.points) for z in self.zones.values()]).astype(np.int64)
        self._line_anchor = np.array([self._anchor_names.index(ln.anchor)
                                      for ln in self.lines.values()], dtype=np.int64)
        ends = np.array([[ln.a, ln.b] for ln in self.lines.values()], dtype=float)
        self._line_a = ends[:, 0] if len(ends) else np.zeros((0, 2))
        self._line_d = (ends[:, 1] - ends[:, 0]) if len(ends) else np.zeros((0, 2))
        self._zone_names = list(self.zones)
        self._sorted = sorted(range(len(self._zone_names)), key=self._zone_names.__getitem__)
        self._row: Dict[int, int] = {}  # track id -> its row
        self._free: List[int] = []
        self._label: List[str] = []  # per row: the track's class when first seen
        self._side = np.zeros((0, len(self.lines)))  # 0: never off the line yet
        self._point = np.zeros((0, len(self.lines), 2))  # the last point off it
        self._inside = np.zeros((0, len(self.zones)), dtype=bool)
        self._since = np.zeros((0, len(self.zones)), dtype=np.int64)
        self._loitered = np.zeros((0, len(self.zones)), dtype=bool)
        self.zones_now: List[List[str]] = []  # per track of the last update: its zones
        self._bits = 1 << np.arange(len(self.zones), dtype=np.int64)
        self._by_set: Dict[int, List[str]] = {}  # bits -> zone names

    def update(self, tracks: Any, removed: Sequence[Any],
               capture_ns: int) -> List[Dict[str, Any]]:
        """``tracks``: the tracks seen in this frame (a
        :class:`vidpipe.analytics.tracker.Tracks`, or anything with ``id``,
        ``label`` and ``box``); ``removed``: those the tracker let go. The
        zone and line events of this frame."""
        events: List[Dict[str, Any]] = []
        ids, labels, boxes = _columns(tracks)
        self.zones_now = []
        if ids:
            rows = np.array([self._row_of(i, label) for i, label in zip(ids, labels)],
                            dtype=np.int64)
            label_array = np.array(labels)
            # the anchor points in use: tracks x anchors x 2
            points = np.stack([arrays.anchors(boxes, a) for a in self._anchor_names], axis=1) \
                if self._anchor_names else np.zeros((len(ids), 0, 2))
            wanted: Dict[Tuple[str, ...], np.ndarray] = {}
            if self.lines:
                self._lines(ids, labels, rows, points, label_array, wanted, events)
            if self.zones:
                inside = arrays.inside_edges(self._edges, points[:, self._edge_anchor])
                for k, zone in enumerate(self.zones.values()):
                    now_in = _wanted_once(wanted, label_array, zone.classes) & inside[:, k]
                    self._zones(k, zone, ids, labels, rows, now_in, capture_ns, events)
            self.zones_now = self._zone_lists(rows)
        for t in removed:
            row = self._row.pop(t.id, None)
            if row is None:
                continue
            for k in self._zones_in(row):
                events.append(_zone_event(self._zone_names[k], "exit", t.id, self._label[row],
                                          int(self._since[row, k]), capture_ns, lost=True))
            self._free_row(row)
        return events

    def _zone_lists(self, rows: np.ndarray) -> List[List[str]]:
        """The zones each of ``rows`` is in, by name."""
        if not self.zones:
            return [[] for _ in rows.tolist()]
        # each row's zones as one number, bit k for the k-th zone by name
        sets = (self._inside[rows][:, self._sorted] @ self._bits).tolist()
        names = self._by_set
        out = []
        for n in sets:
            found = names.get(n)
            if found is None:
                if len(names) >= 4096:  # overlapping zones: bounded all the same
                    names.clear()
                found = names[n] = [self._zone_names[k] for b, k in enumerate(self._sorted)
                                    if n >> b & 1]
            out.append(list(found))
        return out

    def _row_of(self, track_id: int, label: str) -> int:
        row = self._row.get(track_id)
        if row is not None:
            return row
        if not self._free:
            grow = max(16, len(self._label))
            self._free = list(range(len(self._label) + grow - 1, len(self._label) - 1, -1))
            self._label.extend([""] * grow)
            for name in ("_side", "_point", "_inside", "_since", "_loitered"):
                rows = getattr(self, name)
                setattr(self, name, np.concatenate(
                    [rows, np.zeros((grow,) + rows.shape[1:], dtype=rows.dtype)]))
        row = self._row[track_id] = self._free.pop()
        self._label[row] = label
        return row

    def _free_row(self, row: int) -> None:
        self._side[row] = 0.0
        self._inside[row] = False
        self._loitered[row] = False
        self._free.append(row)

    def _lines(self, ids: List[int], labels: List[str], rows: np.ndarray, points: np.ndarray,
               label_array: np.ndarray, wanted: Dict[Tuple[str, ...], np.ndarray],
               events: List[Dict[str, Any]]) -> None:
        """Every line against every track at once; a track that is off a line
        on the other side than last time may have crossed it (Python only there)."""
        at = points[:, self._line_anchor]  # tracks x lines x 2: each line's anchor point
        a, d = self._line_a, self._line_d
        sides = d[:, 0] * (at[:, :, 1] - a[:, 1]) - d[:, 1] * (at[:, :, 0] - a[:, 0])
        take = np.stack([_wanted_once(wanted, label_array, line.classes)
                         for line in self.lines.values()], axis=1)
        last = self._side[rows]
        off = take & (sides != 0)  # on the line: wait to see where it goes
        maybe = off & (last * sides < 0)
        if maybe.any():
            lines = list(self.lines.values())
            for j in np.nonzero(maybe.any(axis=0))[0].tolist():
                self._crossings(j, lines[j], ids, labels, rows, at[:, j], sides[:, j],
                                maybe[:, j], events)
        self._side[rows] = np.where(off, sides, last)
        self._point[rows] = np.where(off[:, :, None], at, self._point[rows])

    def _crossings(self, j: int, line: Line, ids: List[int], labels: List[str],
                   rows: np.ndarray, points: np.ndarray, sides: np.ndarray,
                   maybe: np.ndarray, events: List[Dict[str, Any]]) -> None:
        for i in np.nonzero(maybe)[0].tolist():
            before = self._point[rows[i], j]
            p = (float(points[i, 0]), float(points[i, 1]))
            if not segments_cross((float(before[0]), float(before[1])), p, line.a, line.b):
                continue
            # side() > 0 is the arrow's right as seen from its first point (y
            # down): for an arrow pointing down that is the picture's left, so
            # leaving it for the other side is moving rightwards: "in"
            direction = "in" if sides[i] < 0 else "out"
            key = (line.name, labels[i], direction)
            self.crossed[key] = self.crossed.get(key, 0) + 1
            events.append({"type": "line", "line": line.name, "direction": direction,
                           "track": ids[i], "label": labels[i]})

    def _zones(self, k: int, zone: Zone, ids: List[int], labels: List[str], rows: np.ndarray,
               now_in: np.ndarray, capture_ns: int, events: List[Dict[str, Any]]) -> None:
        was_in = self._inside[rows, k]
        changed = now_in != was_in
        if zone.loiter_s:
            long = capture_ns - self._since[rows, k] >= zone.loiter_s * 1e9
            loiter = now_in & was_in & ~self._loitered[rows, k] & long
        else:
            loiter = None
        if not changed.any() and (loiter is None or not loiter.any()):
            return
        for i in np.nonzero(now_in & ~was_in)[0].tolist():
            row = rows[i]
            self._inside[row, k], self._since[row, k], self._loitered[row, k] = \
                True, capture_ns, False
            key = (zone.name, labels[i])
            self.entered[key] = self.entered.get(key, 0) + 1
            events.append(_zone_event(zone.name, "enter", ids[i], labels[i], capture_ns,
                                      capture_ns))
        if loiter is not None:
            for i in np.nonzero(loiter)[0].tolist():
                self._loitered[rows[i], k] = True
                events.append(_zone_event(zone.name, "loiter", ids[i], labels[i],
                                          int(self._since[rows[i], k]), capture_ns))
        for i in np.nonzero(~now_in & was_in)[0].tolist():
            self._inside[rows[i], k] = False
            events.append(_zone_event(zone.name, "exit", ids[i], labels[i],
                                      int(self._since[rows[i], k]), capture_ns))

    def _zones_in(self, row: int) -> List[int]:
        """The zones (their indices) the track of ``row`` is in, by name."""
        return [k for k in self._sorted if self._inside[row, k]]

    def _zones_of_row(self, row: int) -> List[str]:
        return [self._zone_names[k] for k in self._zones_in(row)]

    def occupancy(self) -> Dict[Tuple[str, str], int]:
        """(zone, label) -> how many tracked objects are in it now."""
        out: Dict[Tuple[str, str], int] = {}
        for row in self._row.values():
            label = self._label[row]
            for name in self._zones_of_row(row):
                out[(name, label)] = out.get((name, label), 0) + 1
        return out

    def zones_of(self, track_id: int) -> List[str]:
        row = self._row.get(track_id)
        return self._zones_of_row(row) if row is not None else []

    def counts(self) -> Dict[str, Any]:
        """Everything counted so far, as ``/metrics`` and the state message show it."""
        return {"zones": {z: {"occupancy": _by_label(self.occupancy(), z),
                              "entered": _by_label(self.entered, z)} for z in self.zones},
                "lines": {n: {d: {lab: c for (ln, lab, dd), c in sorted(self.crossed.items())
                                  if ln == n and dd == d} for d in ("in", "out")}
                          for n in self.lines}}


def _columns(tracks: Any) -> Tuple[List[int], List[str], np.ndarray]:
    """Ids, labels and boxes of a :class:`~vidpipe.analytics.tracker.Tracks`
    or of a sequence of objects with ``id``, ``label`` and ``box``."""
    if hasattr(tracks, "boxes"):
        return tracks.ids, tracks.labels, np.asarray(tracks.boxes, dtype=float).reshape(-1, 4)
    tracks = list(tracks)
    return ([t.id for t in tracks], [t.label for t in tracks],
            np.array([t.box for t in tracks], dtype=float).reshape(-1, 4))


def _wanted(labels: np.ndarray, classes: Tuple[str, ...]) -> np.ndarray:
    return np.isin(labels, classes) if classes else np.ones(len(labels), dtype=bool)


def _wanted_once(cache: Dict[Tuple[str, ...], np.ndarray], labels: np.ndarray,
                 classes: Tuple[str, ...]) -> np.ndarray:
    """:func:`_wanted`, once per class list a frame (areas often share one)."""
    found = cache.get(classes)
    if found is None:
        found = cache[classes] = _wanted(labels, classes)
    return found


def _by_label(counts: Mapping[Tuple[str, str], int], zone: str) -> Dict[str, int]:
    return {label: c for (z, label), c in sorted(counts.items()) if z == zone}


def _zone_event(zone: str, action: str, track: int, label: str, since_ns: int,
                capture_ns: int, lost: bool = False) -> Dict[str, Any]:
    event: Dict[str, Any] = {"type": "zone", "zone": zone, "action": action, "track": track,
                             "label": label, "dwell_s": round((capture_ns - since_ns) / 1e9, 3)}
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
