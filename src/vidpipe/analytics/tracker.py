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
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from vidpipe.analytics.assign import assign
from vidpipe.analytics.observations import MOTION, observations


@dataclass
class Detection:
    box: Tuple[float, float, float, float]  # x, y, w, h in pixels
    label: str = ""
    score: float = 1.0


# the Kalman filter on (cx, cy, w, h) and their velocities, as in SORT/ByteTrack
_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_POS_STD = 1.0 / 20  # of the box height, per frame (ByteTrack's weights)
_VEL_STD = 1.0 / 160


@dataclass(eq=False)  # a track is an identity, not its values (arrays among them)
class Track:
    id: int
    label: str
    score: float
    mean: np.ndarray
    cov: np.ndarray
    first_ns: int
    last_ns: int
    hits: int = 1
    confirmed: bool = False
    seen_now: bool = True  # matched in the frame just fed
    best_score: float = 0.0
    box: Tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # the filter's, [x, y, w, h]


def _xyah(box: Sequence[float]) -> np.ndarray:
    x, y, w, h = box
    return np.array([x + w / 2, y + h / 2, w, h], dtype=float)


def iou_matrix(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> np.ndarray:
    """IoU of every box of ``a`` with every box of ``b`` (``[x, y, w, h]``)."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    a_ = np.asarray(a, dtype=float)
    b_ = np.asarray(b, dtype=float)
    ax2, ay2 = a_[:, 0] + a_[:, 2], a_[:, 1] + a_[:, 3]
    bx2, by2 = b_[:, 0] + b_[:, 2], b_[:, 1] + b_[:, 3]
    w = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a_[:, None, 0], b_[None, :, 0]),
                0, None)
    h = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a_[:, None, 1], b_[None, :, 1]),
                0, None)
    inter = w * h
    union = (a_[:, 2] * a_[:, 3])[:, None] + (b_[:, 2] * b_[:, 3])[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


class Tracker:
    """One camera's tracks. :meth:`update` with each frame's boxes, in order."""

    def __init__(self, high: float = 0.5, low: float = 0.1, new: float = 0.6,
                 match_iou: float = 0.2, low_iou: float = 0.5, lost_s: float = 2.0,
                 max_tracks: int = 1024) -> None:
        self.high, self.low, self.new = high, low, new
        self.match_iou, self.low_iou = match_iou, low_iou
        self.lost_ns = int(lost_s * 1e9)
        self.max_tracks = max_tracks  # boxes from the wire: a flood must not grow the work
        self.refused = 0  # new tracks not started at max_tracks
        self.tracks: List[Track] = []
        self.next_id = 1
        self.last_ns: Optional[int] = None

    def update(self, detections: Sequence[Detection], capture_ns: int) -> Tuple[List[Track],
                                                                                 List[Track]]:
        """Feed one frame. Returns the confirmed tracks seen in it (their boxes
        as filtered) and the tracks removed at this frame (lost too long)."""
        first_frame, previous = self.last_ns is None, self.last_ns
        steps = 0 if previous is not None and capture_ns <= previous else 1  # no motion then
        self.last_ns = capture_ns
        for t in self.tracks:
            t.seen_now = False
        if steps:
            self._predict(self.tracks)
        high = [d for d in detections if d.score >= self.high]
        low = [d for d in detections if self.low <= d.score < self.high]

        confirmed = [t for t in self.tracks if t.confirmed]
        tentative = [t for t in self.tracks if not t.confirmed]
        # 1: every confirmed track (tracked or lost) with the sure boxes
        left_tracks, left_high = self._match(confirmed, high, self.match_iou, capture_ns)
        # 2: the unmatched tracks that were seen in the previous frame, with
        #    the unsure boxes (a lost track does not take an unsure box)
        recent = [t for t in left_tracks if previous is not None and t.last_ns >= previous]
        self._match(recent, low, self.low_iou, capture_ns)
        # 3: new tracks from last frame with the sure boxes left
        left_tentative, left_high = self._match(tentative, left_high, self.match_iou, capture_ns)
        if left_tentative:  # a box seen once and never again was noise
            noise = set(map(id, left_tentative))
            self.tracks = [t for t in self.tracks if id(t) not in noise]
        for d in left_high:
            if d.score >= self.new:
                if len(self.tracks) >= self.max_tracks:
                    self.refused += 1
                    continue
                self._start(d, capture_ns, confirm=first_frame)
        removed = [t for t in self.tracks if capture_ns - t.last_ns > self.lost_ns]
        if removed:
            self.tracks = [t for t in self.tracks if capture_ns - t.last_ns <= self.lost_ns]
        return [t for t in self.tracks if t.confirmed and t.seen_now], \
            [t for t in removed if t.confirmed]

    def _match(self, tracks: List[Track], dets: List[Detection], min_iou: float,
               capture_ns: int) -> Tuple[List[Track], List[Detection]]:
        if not tracks or not dets:
            return list(tracks), list(dets)
        iou = iou_matrix([t.box for t in tracks], [d.box for d in dets])
        same = np.array([t.label for t in tracks])[:, None] == \
            np.array([d.label for d in dets])[None, :]
        cost = np.where(same, 1.0 - iou, np.inf)
        pairs, rows, cols = assign(cost, 1.0 - min_iou)
        self._hit([tracks[r] for r, _ in pairs], [dets[c] for _, c in pairs], capture_ns)
        return [tracks[r] for r in rows], [dets[c] for c in cols]

    def _start(self, d: Detection, capture_ns: int, confirm: bool) -> None:
        z = _xyah(d.box)
        mean = np.concatenate([z, np.zeros(4)])
        h = z[3]
        cov = np.diag(np.square([2 * _POS_STD * h, 2 * _POS_STD * h, 2 * _POS_STD * h,
                                 2 * _POS_STD * h, 10 * _VEL_STD * h, 10 * _VEL_STD * h,
                                 10 * _VEL_STD * h, 10 * _VEL_STD * h]))
        track = Track(self.next_id, d.label, d.score, mean, cov, capture_ns, capture_ns,
                      confirmed=confirm, best_score=d.score, box=tuple(d.box))
        self.next_id += 1
        self.tracks.append(track)

    @staticmethod
    def _predict(tracks: List[Track]) -> None:
        """One frame of motion for every track at once (stacked: a track's
        filter costs no Python of its own)."""
        if not tracks:
            return
        mean = np.array([t.mean for t in tracks]) @ _F.T
        cov = _F @ np.array([t.cov for t in tracks]) @ _F.T
        h = np.maximum(mean[:, 3], 1.0)
        cov[:, _DIAG, _DIAG] += np.concatenate([np.repeat(np.square(_POS_STD * h)[:, None], 4, 1),
                                                np.repeat(np.square(_VEL_STD * h)[:, None], 4, 1)],
                                               axis=1)
        _store(tracks, mean, cov)

    def _hit(self, tracks: List[Track], dets: List[Detection], capture_ns: int) -> None:
        """The Kalman update of every matched track with its box, at once."""
        if not tracks:
            return
        mean = np.array([t.mean for t in tracks])
        cov = np.array([t.cov for t in tracks])
        z = np.array([d.box for d in dets], dtype=float)
        z[:, 0] += z[:, 2] / 2
        z[:, 1] += z[:, 3] / 2
        s = cov[:, :4, :4] + np.eye(4) * np.square(_POS_STD * z[:, 3])[:, None, None]
        gain = np.linalg.solve(s, cov[:, :4, :]).transpose(0, 2, 1)  # P H' S^-1 (S symmetric)
        mean = mean + (gain @ (z - mean[:, :4])[:, :, None])[:, :, 0]
        cov = cov - gain @ cov[:, :4, :]
        mean[:, 2:4] = np.maximum(mean[:, 2:4], 1.0)
        _store(tracks, mean, cov)
        for t, d in zip(tracks, dets):
            t.last_ns = capture_ns
            t.hits += 1
            t.seen_now = True
            t.score = d.score
            if d.score > t.best_score:
                t.best_score = d.score
            if t.hits >= 2:
                t.confirmed = True


_DIAG = np.arange(8)


def _store(tracks: List[Track], mean: np.ndarray, cov: np.ndarray) -> None:
    boxes = np.column_stack([mean[:, 0] - mean[:, 2] / 2, mean[:, 1] - mean[:, 3] / 2,
                             mean[:, 2], mean[:, 3]]).tolist()
    for i, t in enumerate(tracks):
        t.mean, t.cov, t.box = mean[i], cov[i], tuple(boxes[i])


def detections_from_meta(meta: Dict[str, object]) -> List[Detection]:
    """What the stages found (:mod:`.observations`), as boxes to track;
    motion blobs score 1.0 (a blob that moved is certain, however small)."""
    return [Detection((float(o.box[0]), float(o.box[1]), float(o.box[2]), float(o.box[3])),
                      o.label, 1.0 if o.kind == MOTION else o.score)
            for o in observations(meta)]
