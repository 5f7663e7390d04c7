"""Stable IDs for the boxes the stages find, one camera's frames in order.

ByteTrack's association (Zhang et al., 2022), in the form its authors
published: every track's box is predicted by a constant-velocity Kalman
filter; boxes scored at least ``high`` are matched first, to every track
(those tracked now and those lost a while), by IoU with an optimal
assignment; the tracks still unmatched then take the low-scored boxes
(occluded, blurred objects a detector is unsure of) at a stricter IoU, so a
person half hidden behind another keeps their ID instead of being dropped
and reborn; a high box nobody took starts a new track, confirmed on its
second frame; a track not seen for ``lost_s`` seconds is removed, and one
that returns within that time keeps its ID. Boxes of different classes are
never matched.

Any boxes do: detections (``[x, y, w, h]``, a class, a score), faces or
motion blobs (score 1.0). Time comes from the frames' capture times, so a
camera at 5 fps and one at 30 fps both keep an object for ``lost_s``.

The tracks are kept as arrays, one row a track (a structure of arrays): the
filters of every track are predicted and corrected in a few NumPy calls, and
nothing in a frame costs Python per track but reading the result out
(issue 27: the collector's tracking, zones and lines within 1 ms a frame
for 50 objects).
"""

from dataclasses import dataclass
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from vidpipe.analytics.assign import assign
from vidpipe.analytics.observations import MOTION, Observation, observations


@dataclass
class Detection:
    box: Tuple[float, float, float, float]  # x, y, w, h in pixels
    label: str = ""
    score: float = 1.0


# the Kalman filter on (cx, cy, w, h) and their velocities, as in SORT/ByteTrack
_POS_STD = 1.0 / 20  # of the box height, per frame (ByteTrack's weights)
_VEL_STD = 1.0 / 160
_DIAG = np.arange(8)


class Track(NamedTuple):
    """One track as it stood when it was read out."""
    id: int
    label: str
    score: float  # of the box it was last matched with
    best_score: float
    first_ns: int
    last_ns: int  # when it was last matched
    box: Tuple[float, float, float, float]  # the filter's, [x, y, w, h]


class Tracks:
    """Several tracks at once, as arrays (what the scene and the zones work
    on); iterating gives :class:`Track` views."""

    __slots__ = ("ids", "labels", "boxes", "scores", "best_scores", "first_ns", "last_ns")

    def __init__(self, ids: List[int], labels: List[str], boxes: np.ndarray,
                 scores: np.ndarray, best_scores: np.ndarray, first_ns: List[int],
                 last_ns: List[int]) -> None:
        self.ids, self.labels, self.boxes = ids, labels, boxes
        self.scores, self.best_scores = scores, best_scores
        self.first_ns, self.last_ns = first_ns, last_ns

    @classmethod
    def none(cls) -> "Tracks":
        return cls([], [], np.zeros((0, 4)), np.zeros(0), np.zeros(0), [], [])

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Track]:
        return (self[i] for i in range(len(self.ids)))

    def __getitem__(self, i: int) -> Track:
        return Track(self.ids[i], self.labels[i], float(self.scores[i]),
                     float(self.best_scores[i]), self.first_ns[i], self.last_ns[i],
                     tuple(self.boxes[i].tolist()))  # type: ignore[arg-type]


def _xyah(boxes: np.ndarray) -> np.ndarray:
    """``[x, y, w, h]`` rows as the filter's (cx, cy, w, h)."""
    z = np.array(boxes, dtype=float)
    z[:, 0] += z[:, 2] / 2
    z[:, 1] += z[:, 3] / 2
    return z


def _boxes(mean: np.ndarray) -> np.ndarray:
    return np.column_stack([mean[:, 0] - mean[:, 2] / 2, mean[:, 1] - mean[:, 3] / 2,
                            mean[:, 2], mean[:, 3]])


def iou_matrix(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b`` (``[x, y, w, h]``)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    a_ = np.asarray(a, dtype=float)
    b_ = np.asarray(b, dtype=float)
    ax2, ay2 = a_[:, 0] + a_[:, 2], a_[:, 1] + a_[:, 3]
    bx2, by2 = b_[:, 0] + b_[:, 2], b_[:, 1] + b_[:, 3]
    w = np.maximum(np.minimum(ax2[:, None], bx2[None]) -
                   np.maximum(a_[:, None, 0], b_[None, :, 0]), 0.0)
    h = np.maximum(np.minimum(ay2[:, None], by2[None]) -
                   np.maximum(a_[:, None, 1], b_[None, :, 1]), 0.0)
    inter = w * h
    union = (a_[:, 2] * a_[:, 3])[:, None] + (b_[:, 2] * b_[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


class _Frame:
    """One frame's boxes, as arrays."""

    __slots__ = ("boxes", "codes", "scores", "ns", "rows", "dets")

    def __init__(self, boxes: np.ndarray, codes: np.ndarray, scores: np.ndarray,
                 ns: int) -> None:
        self.boxes, self.codes, self.scores, self.ns = boxes, codes, scores, ns
        # the pairs matched so far (track rows, box indices): their filters are
        # corrected once, after all three rounds (each round matches other
        # tracks than the last, by the boxes as predicted)
        self.rows: List[np.ndarray] = []
        self.dets: List[np.ndarray] = []


class Tracker:
    """One camera's tracks. :meth:`update` with each frame's boxes, in order."""

    _FIELDS = ("_mean", "_cov", "_box", "_id", "_code", "_score", "_best", "_first", "_last",
               "_confirmed")

    def __init__(self, high: float = 0.5, low: float = 0.1, new: float = 0.6,
                 match_iou: float = 0.2, low_iou: float = 0.5, lost_s: float = 2.0,
                 max_tracks: int = 1024) -> None:
        self.high, self.low, self.new = high, low, new
        self.match_iou, self.low_iou = match_iou, low_iou
        self.lost_ns = int(lost_s * 1e9)
        self.max_tracks = max_tracks  # boxes from the wire: a flood must not grow the work
        self.refused = 0  # new tracks not started at max_tracks
        self.next_id = 1
        self.last_ns: Optional[int] = None
        self._codes: Dict[str, int] = {}  # label -> the number the rows hold
        self._names: List[str] = []
        self._mean = np.zeros((0, 8))
        self._cov = np.zeros((0, 8, 8))
        self._box = np.zeros((0, 4))  # the filter's boxes, [x, y, w, h]
        self._id = np.zeros(0, dtype=np.int64)
        self._code = np.zeros(0, dtype=np.int64)
        self._score = np.zeros(0)
        self._best = np.zeros(0)
        self._first = np.zeros(0, dtype=np.int64)
        self._last = np.zeros(0, dtype=np.int64)
        self._confirmed = np.zeros(0, dtype=bool)  # matched on a second frame

    @property
    def count(self) -> int:
        return len(self._id)

    @property
    def tracks(self) -> List[Track]:
        """Every track kept (tentative and lost ones too), oldest first."""
        return list(self._read(np.arange(self.count)))

    def update(self, detections: Sequence[Detection], capture_ns: int) -> Tuple[Tracks, Tracks]:
        """Feed one frame. Returns the confirmed tracks seen in it (their boxes
        as filtered) and the tracks removed at this frame (lost too long)."""
        boxes = np.array([d.box for d in detections], dtype=float).reshape(-1, 4)
        return self.update_arrays(boxes, [d.label for d in detections],
                                  np.array([d.score for d in detections], dtype=float),
                                  capture_ns)

    def update_arrays(self, boxes: np.ndarray, labels: Sequence[str], scores: np.ndarray,
                      capture_ns: int) -> Tuple[Tracks, Tracks]:
        """:meth:`update` with the frame's boxes as arrays: ``boxes`` (n x 4,
        ``[x, y, w, h]``), their ``labels`` and ``scores``."""
        first_frame, previous = self.last_ns is None, self.last_ns
        moved = previous is None or capture_ns > previous  # else no motion to predict
        self.last_ns = capture_ns
        if moved and self.count:
            self._predict()
        frame = _Frame(boxes, self._code_of(labels), scores, capture_ns)
        high = np.nonzero(scores >= self.high)[0]
        low = np.nonzero((scores >= self.low) & (scores < self.high))[0]
        # 1: every confirmed track (tracked or lost) with the sure boxes
        left, high = self._match(np.nonzero(self._confirmed)[0], high, self.match_iou, frame)
        # 2: the unmatched tracks that were seen in the previous frame, with
        #    the unsure boxes (a lost track does not take an unsure box)
        if previous is not None:
            self._match(left[self._last[left] >= previous], low, self.low_iou, frame)
        # 3: new tracks from last frame with the sure boxes left
        noise, high = self._match(np.nonzero(~self._confirmed)[0], high, self.match_iou, frame)
        seen = np.zeros(self.count, dtype=bool)
        if frame.rows:
            rows = np.concatenate(frame.rows)
            self._hit(rows, np.concatenate(frame.dets), frame)
            seen[rows] = True
        keep = np.ones(self.count, dtype=bool)
        keep[noise] = False  # a box seen once and never again was noise
        gone = keep & (capture_ns - self._last > self.lost_ns)
        removed = self._read(np.nonzero(gone & self._confirmed)[0])
        keep &= ~gone
        self._take(keep)
        seen = seen[keep]
        started = self._start(high[scores[high] >= self.new], frame, confirm=first_frame)
        seen = np.concatenate([seen, np.full(started, True)])
        return self._read(np.nonzero(seen & self._confirmed)[0]), removed

    def drop_all(self) -> Tracks:
        """Every track, let go at once (the stream ended)."""
        out = self._read(np.arange(self.count))
        self._take(np.zeros(self.count, dtype=bool))
        return out

    def _code_of(self, labels: Sequence[str]) -> np.ndarray:
        if len(self._codes) > 4 * self.max_tracks + 1024:  # labels off the wire:
            # forget the ones no track holds
            live = [self._names[c] for c in self._code.tolist()]
            self._codes, self._names = {}, []
            self._code = np.array([self._number(name) for name in live], dtype=np.int64)
        return np.array([self._number(label) for label in labels], dtype=np.int64)

    def _number(self, label: str) -> int:
        code = self._codes.get(label)
        if code is None:
            code = self._codes[label] = len(self._names)
            self._names.append(label)
        return code

    def _match(self, tracks: np.ndarray, dets: np.ndarray, min_iou: float,
               frame: _Frame) -> Tuple[np.ndarray, np.ndarray]:
        """Match rows ``tracks`` with boxes ``dets``; the ones of each left over."""
        if not len(tracks) or not len(dets):
            return tracks, dets
        iou = iou_matrix(self._box[tracks], frame.boxes[dets])
        same = self._code[tracks][:, None] == frame.codes[dets][None, :]
        pairs, rows, cols = assign(np.where(same, 1.0 - iou, np.inf), 1.0 - min_iou)
        if pairs:
            matched = np.array(pairs, dtype=np.int64)
            frame.rows.append(tracks[matched[:, 0]])
            frame.dets.append(dets[matched[:, 1]])
        return tracks[np.array(rows, dtype=np.int64)], dets[np.array(cols, dtype=np.int64)]

    def _start(self, dets: np.ndarray, frame: _Frame, confirm: bool) -> int:
        room = max(0, self.max_tracks - self.count)
        if len(dets) > room:
            self.refused += len(dets) - room
            dets = dets[:room]
        n = len(dets)
        if not n:
            return 0
        z = _xyah(frame.boxes[dets])
        h = z[:, 3]
        cov = np.zeros((n, 8, 8))
        cov[:, _DIAG, _DIAG] = np.square(np.column_stack([2 * _POS_STD * h] * 4 +
                                                         [10 * _VEL_STD * h] * 4))
        scores = frame.scores[dets]
        self._append(_mean=np.column_stack([z, np.zeros((n, 4))]), _cov=cov,
                     _box=frame.boxes[dets], _id=np.arange(self.next_id, self.next_id + n),
                     _code=frame.codes[dets], _score=scores, _best=scores,
                     _first=np.full(n, frame.ns, dtype=np.int64),
                     _last=np.full(n, frame.ns, dtype=np.int64),
                     _confirmed=np.full(n, confirm))
        self.next_id += n
        return n

    def _predict(self) -> None:
        """One frame of motion for every track at once."""
        # F x and F P F' for F = [[I, I], [0, I]], by its blocks: a position
        # gains its velocity, and so do the covariances
        mean = self._mean.copy()
        mean[:, :4] += mean[:, 4:]
        cov = self._cov.copy()
        cov[:, :4, :] += cov[:, 4:, :]
        cov[:, :, :4] += cov[:, :, 4:]
        h = np.maximum(mean[:, 3], 1.0)
        cov[:, _DIAG, _DIAG] += np.concatenate([np.repeat(np.square(_POS_STD * h)[:, None], 4, 1),
                                                np.repeat(np.square(_VEL_STD * h)[:, None], 4, 1)],
                                               axis=1)
        self._mean, self._cov, self._box = mean, cov, _boxes(mean)

    def _hit(self, rows: np.ndarray, dets: np.ndarray, frame: _Frame) -> None:
        """The Kalman update of the tracks ``rows`` with the boxes ``dets``, at once."""
        mean = self._mean[rows]
        cov = self._cov[rows]
        z = _xyah(frame.boxes[dets])
        s = cov[:, :4, :4] + np.eye(4) * np.square(_POS_STD * z[:, 3])[:, None, None]
        gain = np.linalg.solve(s, cov[:, :4, :]).transpose(0, 2, 1)  # P H' S^-1 (S symmetric)
        mean = mean + (gain @ (z - mean[:, :4])[:, :, None])[:, :, 0]
        cov = cov - gain @ cov[:, :4, :]
        mean[:, 2:4] = np.maximum(mean[:, 2:4], 1.0)
        self._mean[rows], self._cov[rows], self._box[rows] = mean, cov, _boxes(mean)
        scores = frame.scores[dets]
        self._last[rows] = frame.ns
        self._score[rows] = scores
        self._best[rows] = np.maximum(self._best[rows], scores)
        self._confirmed[rows] = True  # its second box at least

    def _read(self, rows: np.ndarray) -> Tracks:
        names = self._names
        return Tracks(self._id[rows].tolist(), [names[c] for c in self._code[rows].tolist()],
                      self._box[rows], self._score[rows], self._best[rows],
                      self._first[rows].tolist(), self._last[rows].tolist())

    def _take(self, keep: np.ndarray) -> None:
        if keep.all():
            return
        for name in self._FIELDS:
            setattr(self, name, getattr(self, name)[keep])

    def _append(self, **rows: np.ndarray) -> None:
        for name in self._FIELDS:
            setattr(self, name, np.concatenate([getattr(self, name), rows[name]]))


def detections_from_meta(meta: Dict[str, object]) -> List[Detection]:
    """What the stages found (:mod:`.observations`), as boxes to track;
    motion blobs score 1.0 (a blob that moved is certain, however small)."""
    return [Detection((float(o.box[0]), float(o.box[1]), float(o.box[2]), float(o.box[3])),
                      o.label, track_score(o))
            for o in observations(meta)]


def track_score(found: Observation) -> float:
    """How sure a box is, to the tracker: a detection's confidence; a motion
    blob 1.0 (a blob that moved is certain, however small)."""
    return 1.0 if found.kind == MOTION else found.score
