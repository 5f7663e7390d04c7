"""One camera's scene at the collector: the tracker and the zones and lines,
fed each processed frame's metadata in order.

What it finds goes into the result's metadata under keys the collector owns
(whatever a handler put there is replaced first): ``objects``, the tracks
seen in the frame (``id``, ``label``, ``box``, ``score``), and ``areas``, the
zone and line events of the frame. Outputs read them from there: the JSONL
record, the broker outputs' events, the preview's boxes.
"""

from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from vidpipe import names
from vidpipe.analytics.areas import Areas, Line, Zone
from vidpipe.analytics.observations import observations
from vidpipe.analytics.tracker import Tracker, Tracks, track_score

OWNED = ("objects", "areas")  # metadata keys the collector writes
MAX_DETECTIONS = 256  # boxes taken from one frame (the first ones); the rest counted
MAX_LABELS = 64  # classes counted per camera; later ones are counted as "other"
MAX_HISTORY = 32  # zones and crossings kept per object for its end event


class _History:
    def __init__(self, first_ns: int, best: float, told_ns: int) -> None:
        self.first_ns = first_ns
        self.zones: List[str] = []
        self.crossed: List[List[str]] = []
        self.best = best  # the best score published (start, update)
        self.told_ns = told_ns  # when it was


class Scene:
    def __init__(self, zones: Mapping[str, Zone], lines: Mapping[str, Line],
                 lost_s: float = 2.0, update_s: float = 1.0) -> None:
        self.tracker = Tracker(lost_s=lost_s)
        self.update_ns = int(update_s * 1e9) if update_s > 0 else None
        self.areas = Areas(zones, lines)
        self.labels: Dict[str, str] = {}
        self.cut = 0  # boxes over MAX_DETECTIONS left out
        self.last_objects: List[Dict[str, Any]] = []  # shown again on frames not detected
        self.history: Dict[int, _History] = {}  # track -> where it went, for its end event

    def observe(self, meta: Dict[str, Any], capture_ns: int) -> None:
        """Track what ``meta`` says was found; write ``objects`` and ``areas`` into it."""
        for key in OWNED:
            meta.pop(key, None)
        if meta.get("skipped"):  # no detector ran (detect_fps, detect_when): the tracks
            meta["objects"], meta["areas"] = self.last_objects, []  # stand as they were
            return
        found = observations(meta)
        if len(found) > MAX_DETECTIONS:
            self.cut += len(found) - MAX_DETECTIONS
            found = found[:MAX_DETECTIONS]
        boxes = np.array([o.box for o in found], dtype=float).reshape(-1, 4)
        scores = np.array([track_score(o) for o in found], dtype=float)
        seen, removed = self.tracker.update_arrays(boxes, [self._label(o.label) for o in found],
                                                   scores, capture_ns)
        events = self.areas.update(seen, removed, capture_ns)
        objects = [{"id": i, "label": label, "score": round(score, 3), "box": box, "zones": zones}
                   for i, label, score, box, zones in zip(
                       seen.ids, seen.labels, seen.scores.tolist(),
                       np.round(seen.boxes, 1).tolist(), self.areas.zones_now)]
        meta["areas"] = self._objects(seen, objects, removed, events, capture_ns) + events
        meta["objects"] = self.last_objects = objects

    def _objects(self, seen: Tracks, objects: List[Dict[str, Any]], removed: Tracks,
                 events: List[Dict[str, Any]], capture_ns: int) -> List[Dict[str, Any]]:
        """``object`` events: ``start`` when a track is first confirmed;
        ``update`` when its best score rose, at most every ``update_s``; both
        with ``"best": true`` (this frame is the object's best picture so far:
        the broker outputs publish it as the snapshot); ``end`` when the
        tracker lets it go, with where it went (the zones it entered, the lines
        it crossed, in order; at most MAX_HISTORY of each)."""
        out: List[Dict[str, Any]] = []
        history = self.history
        best = seen.best_scores.tolist()
        for n, obj in enumerate(objects):
            h = history.get(obj["id"])
            if h is None:
                history[obj["id"]] = _History(seen.first_ns[n], best[n], capture_ns)
                out.append({"type": "object", "action": "start", "track": obj["id"],
                            "label": obj["label"], "score": obj["score"], "box": obj["box"],
                            "zones": list(obj["zones"]), "best": True})
            elif best[n] > h.best and self.update_ns is not None and \
                    capture_ns - h.told_ns >= self.update_ns:
                h.best, h.told_ns = best[n], capture_ns
                out.append({"type": "object", "action": "update", "track": obj["id"],
                            "label": obj["label"], "score": obj["score"],
                            "best_score": round(best[n], 3), "box": obj["box"],
                            "zones": list(obj["zones"]), "best": True})
        for e in events:
            h = history.get(e["track"])
            if h is None:
                continue
            if e["type"] == "zone" and e["action"] == "enter" and e["zone"] not in h.zones \
                    and len(h.zones) < MAX_HISTORY:
                h.zones.append(e["zone"])
            elif e["type"] == "line" and len(h.crossed) < MAX_HISTORY:
                h.crossed.append([e["line"], e["direction"]])
        for t in removed:
            h = history.pop(t.id, None)
            if h is not None:
                out.append({"type": "object", "action": "end", "track": t.id, "label": t.label,
                            "best_score": round(t.best_score, 3),
                            "duration_s": round((t.last_ns - h.first_ns) / 1e9, 3),
                            "zones": h.zones, "crossed": h.crossed})
        return out

    def end_all(self, capture_ns: int) -> List[Dict[str, Any]]:
        """The stream ended: every object still tracked ends (zones left, ``lost``)."""
        removed = self.tracker.drop_all()
        events = self.areas.update([], removed, capture_ns)
        return self._objects(Tracks.none(), [], removed, events, capture_ns) + events

    def _label(self, raw: str) -> str:
        known = self.labels.get(raw)
        if known is None:
            known = names.label(raw) if len(self.labels) < MAX_LABELS else "other"
            if len(self.labels) < MAX_LABELS:
                self.labels[raw] = known
        return known

    def counts(self) -> Dict[str, Any]:
        return dict(self.areas.counts(), tracks=self.tracker.count,
                    **({"boxes_cut": self.cut} if self.cut else {}),
                    **({"tracks_refused": self.tracker.refused} if self.tracker.refused else {}))


def scene_for(camera: Any) -> Optional[Scene]:
    """The scene of a configured camera that tracks (``track = true``, or
    zones or lines given), else ``None``."""
    if camera is None or not (camera.track or camera.zones or camera.lines):
        return None
    return Scene(camera.zones, camera.lines, camera.track_lost_s, camera.track_update_s)


def strip(meta: Dict[str, Any]) -> None:
    """A camera without a scene: what a handler wrote under the collector's keys goes."""
    for key in OWNED:
        meta.pop(key, None)



def observe(scene: Optional[Scene], meta: Any, capture_ns: int, late: bool) -> None:
    """The objects and zone and line events of an in-order frame go into its
    metadata, for every output; a late frame (tracking has moved on) or a
    camera that does not track gets none, whatever a handler wrote."""
    if not isinstance(meta, dict):
        return
    if scene is not None and not late:
        scene.observe(meta, capture_ns)
    else:
        strip(meta)
