"""Events from results: what a camera saw start, go on and end.

The collector feeds every result it releases in order (:meth:`Tracker.feed`);
the tracker reads what the stages found in its metadata -- ``motion`` boxes,
``faces``, ``detections`` by label -- and debounces it per camera and label:

* **start** once the label was seen in ``min_frames`` consecutive processed
  frames;
* **update** while it goes on, when its best score rises or at most every
  ``update_s`` seconds;
* **end** when it has not been seen for ``end_after_s`` seconds of capture
  time (or the stream ended), with how long it lasted and its best score.

An event is a dict (the JSON published, schema version :data:`VERSION`);
its ``id`` is the same for the start, updates and end of one occurrence and
stays the same when it is sent again (a broker output delivers at least
once), so consumers can de-duplicate on (``id``, ``type``, ``seq``).
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from vidpipe.analytics.observations import observations

VERSION = 2  # 2: object, zone and line events (vidpipe.analytics) beside these
MAX_BOXES = 32  # per event: a noisy motion mask must not make a huge message
MAX_LABELS = 64  # per camera: labels come from models, not from the wire


def by_label(meta: Dict[str, Any]) -> Dict[str, Tuple[List[Any], float]]:
    """label -> (boxes, best score) of what the stages found
    (:func:`vidpipe.analytics.observations.observations`: labels already of
    the label rule; motion's score is the share of the picture that moved)."""
    seen: Dict[str, Tuple[List[Any], float]] = {}
    for o in observations(meta):
        boxes, best = seen.get(o.label, ([], 0.0))
        seen[o.label] = (boxes + [list(o.box)], max(best, o.score))
    return seen


@dataclass
class _Active:
    id: str
    start_seq: int
    start_ns: int
    last_seq: int = 0
    last_ns: int = 0
    frames: int = 0
    best: float = 0.0
    best_seq: int = 0
    last_update_ns: int = 0


@dataclass
class _Label:
    streak: int = 0  # consecutive frames seen while not active
    streak_start: Tuple[int, int] = (0, 0)  # (seq, capture_ns) of the streak's first frame
    active: Optional[_Active] = None


@dataclass
class Tracker:
    min_frames: int = 2
    end_after_s: float = 2.0
    update_s: float = 5.0
    cameras: Dict[str, Dict[str, _Label]] = field(default_factory=dict)

    def feed(self, camera: str, seq: int, capture_ns: int,
             meta: Dict[str, Any]) -> List[Dict[str, Any]]:
        """The events one in-order result makes (often none)."""
        labels = self.cameras.setdefault(camera, {})
        seen = by_label(meta)
        out: List[Dict[str, Any]] = []
        for label, (boxes, score) in seen.items():
            state = labels.get(label)
            if state is None:
                if len(labels) >= MAX_LABELS:
                    continue
                state = labels[label] = _Label()
            out.extend(self._seen(camera, label, state, seq, capture_ns, boxes, score))
        for label, state in labels.items():
            if label not in seen:
                state.streak = 0
                out.extend(self._expire(camera, label, state, capture_ns))
        return out

    def _seen(self, camera: str, label: str, state: _Label, seq: int, capture_ns: int,
              boxes: List[Any], score: float) -> List[Dict[str, Any]]:
        active = state.active
        if active is None:
            if state.streak == 0:
                state.streak_start = (seq, capture_ns)
            state.streak += 1
            if state.streak < self.min_frames:
                return []
            first_seq, first_ns = state.streak_start
            active = state.active = _Active(
                id="{}-{}-{}".format(camera, label, first_ns), start_seq=first_seq,
                start_ns=first_ns, best=score, best_seq=seq, last_update_ns=capture_ns,
                frames=state.streak - 1)  # the streak's frames (this one is noted below)
            state.streak = 0
            self._note(active, seq, capture_ns)
            return [self._event("start", camera, label, active, seq, capture_ns, boxes, score)]
        self._note(active, seq, capture_ns)
        better = score > active.best
        if better:
            active.best, active.best_seq = score, seq
        if better or capture_ns - active.last_update_ns >= self.update_s * 1e9:
            active.last_update_ns = capture_ns
            return [self._event("update", camera, label, active, seq, capture_ns, boxes, score)]
        return []

    @staticmethod
    def _note(active: _Active, seq: int, capture_ns: int) -> None:
        active.last_seq, active.last_ns = seq, capture_ns
        active.frames += 1

    def _expire(self, camera: str, label: str, state: _Label,
                now_ns: int) -> List[Dict[str, Any]]:
        active = state.active
        if active is None or now_ns - active.last_ns < self.end_after_s * 1e9:
            return []
        state.active = None
        return [self._event("end", camera, label, active, active.last_seq, active.last_ns,
                            [], active.best)]

    def end_all(self, camera: str) -> List[Dict[str, Any]]:
        """The stream ended: every active event of ``camera`` ends now."""
        out = []
        for label, state in self.cameras.get(camera, {}).items():
            state.streak = 0
            if state.active is not None:
                out.extend(self._expire(camera, label, state, state.active.last_ns +
                                        int(self.end_after_s * 1e9)))
        return out

    @staticmethod
    def _event(kind: str, camera: str, label: str, active: _Active, seq: int, capture_ns: int,
               boxes: List[Any], score: float) -> Dict[str, Any]:
        return {"v": VERSION, "type": kind, "id": active.id, "camera": camera, "label": label,
                "seq": seq, "capture_ns": capture_ns, "boxes": boxes[:MAX_BOXES],
                "score": round(score, 4), "start_seq": active.start_seq,
                "start_ns": active.start_ns, "frames": active.frames,
                "best_score": round(active.best, 4), "best_seq": active.best_seq,
                "duration_s": round((active.last_ns - active.start_ns) / 1e9, 3)}
