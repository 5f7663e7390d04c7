"""Tracking accuracy on synthetic scenes with stated truth, vidpipe's
tracker side by side with a peer's on the same detections (issue 27).

The scenes: five people (40x100 boxes) walking at known speeds -- two cross
head on (one hidden behind the other for a few frames: its boxes scored
0.3, as a detector unsure of it would), one stops for 60 frames, one leaves
the picture and returns 30 frames later, one comes in late -- with 2 px of
jitter, 10 % of the boxes missed and a false box in 5 % of the frames (and
a noiseless variant). Scored with py-motmetrics (MOTA, IDF1, ID switches;
IoU >= 0.5) for ``vidpipe.analytics.tracker.Tracker`` and for
``supervision``'s ByteTrack (Roboflow; pinned in
``tests/bench/tracking-requirements.txt``)::

    ./dev bench-tracking          # makes .venv-track, prints the table
    ./dev bench-tracking --json   # the same rows as JSON (the CI smoke test's)

Without motmetrics and supervision (the unit tests import :func:`scene`,
:func:`score` and :func:`run_tracker` from here) the scorer below counts
IDF1 and ID switches the way py-motmetrics does.
"""

import json
import random
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from vidpipe.analytics.assign import assign  # noqa: E402
from vidpipe.analytics.tracker import Detection, Tracker, iou_matrix  # noqa: E402

FRAME_NS = 33_333_333  # 30 fps
Box = Tuple[float, float, float, float]




def scene(frames: int = 300, seed: int = 3, miss: float = 0.1, false_pos: float = 0.05,
          noise: float = 2.0) -> Tuple[List[List[Detection]], List[Dict[int, Tuple]]]:
    """Five people (40x100 boxes) walking at known speeds: two cross each
    other head on (one occludes the other for a few frames: the hidden one's
    box is scored low), one stops for 60 frames, one leaves the picture and
    returns 30 frames later. Detections jittered by ``noise`` px, each missed
    with probability ``miss``, plus false boxes at ``false_pos`` a frame.
    Returns the detections per frame and the truth (object -> box) per frame."""
    rng = random.Random(seed)

    def walker(x0: float, y0: float, vx: float, vy: float, start: int = 0,
               stop: Tuple[int, int] = (0, 0), away: Tuple[int, int] = (0, 0)):
        def at(f: int):
            if f < start or away[0] <= f < away[1]:
                return None
            t = f - start - max(0, min(f, stop[1]) - stop[0]) if stop[1] else f - start
            return (x0 + vx * t, y0 + vy * t, 40.0, 100.0)
        return at

    people = {1: walker(20, 200, 3, 0), 2: walker(900, 210, -3, 0),  # they cross near f 147
              3: walker(100, 20, 1, 0.3, stop=(100, 160)),
              4: walker(300, 360, 2, 0, start=20, away=(150, 180)),
              5: walker(600, 40, -1, 0.5, start=50)}
    dets, truth = [], []
    for f in range(frames):
        now: Dict[int, Tuple] = {}
        found = []
        for pid, at in people.items():
            box = at(f)
            if box is None or not (0 <= box[0] <= 1240 and 0 <= box[1] <= 620):
                continue
            now[pid] = box
            if rng.random() < miss:
                continue
            score = 0.9
            if pid == 2 and 1 in now and iou_matrix([box], [now[1]])[0, 0] > 0.3:
                score = 0.3  # behind person 1: a detector is unsure of it
            jitter = tuple(v + rng.gauss(0, noise) for v in box[:2]) + box[2:]
            found.append(Detection(jitter, "person", score))
        if rng.random() < false_pos:
            found.append(Detection((rng.uniform(0, 1200), rng.uniform(0, 600), 40, 100),
                                   "person", rng.uniform(0.6, 0.8)))
        dets.append(found)
        truth.append(now)
    return dets, truth


def score(truth: List[Dict[int, Tuple]], tracked: List[Dict[int, Tuple]]) -> Dict[str, float]:
    """IDF1 (each truth object matched to the one track that covers it most,
    IoU >= 0.5, over the whole run) and ID switches, as py-motmetrics counts them."""
    overlap: Dict[Tuple[int, int], int] = {}
    switches = 0
    last: Dict[int, int] = {}
    for gt, hyp in zip(truth, tracked):
        gids, hids = list(gt), list(hyp)
        if not gids or not hids:
            continue
        iou = iou_matrix([gt[g] for g in gids], [hyp[h] for h in hids])
        pairs, _, _ = assign(1 - iou, 0.5)
        for r, c in pairs:
            g, h = gids[r], hids[c]
            overlap[(g, h)] = overlap.get((g, h), 0) + 1
            if g in last and last[g] != h:
                switches += 1
            last[g] = h
    gts = sorted({g for f in truth for g in f})
    hyps = sorted({h for f in tracked for h in f})
    cost = np.array([[-overlap.get((g, h), 0) for h in hyps] for g in gts], float)
    pairs, _, _ = assign(cost, 0.0)
    idtp = -sum(cost[r, c] for r, c in pairs)
    n_gt = sum(len(f) for f in truth)
    n_hyp = sum(len(f) for f in tracked)
    return {"idf1": 2 * idtp / (n_gt + n_hyp), "switches": switches,
            "missed": n_gt - sum(overlap.values())}


def run_tracker(dets: List[List[Detection]], **kw) -> List[Dict[int, Tuple]]:
    tracker = Tracker(**kw)
    out = []
    for f, found in enumerate(dets):
        seen, _ = tracker.update(found, f * FRAME_NS)
        out.append({t.id: t.box for t in seen})
    return out


def run_peer(dets: List[List[Detection]]) -> List[Dict[int, Box]]:
    """supervision's ByteTrack on the same boxes (its defaults, 30 fps)."""
    import supervision as sv

    tracker = sv.ByteTrack(frame_rate=30)
    out = []
    for found in dets:
        if found:
            xyxy = np.array([[d.box[0], d.box[1], d.box[0] + d.box[2], d.box[1] + d.box[3]]
                             for d in found], dtype=float)
            detections = sv.Detections(xyxy=xyxy, confidence=np.array([d.score for d in found]),
                                       class_id=np.zeros(len(found), dtype=int))
        else:
            detections = sv.Detections.empty()
        tracked = tracker.update_with_detections(detections)
        out.append({int(t): (float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1]))
                    for b, t in zip(tracked.xyxy, tracked.tracker_id)})
    return out


def motmetrics(truth: List[Dict[int, Box]], tracked: List[Dict[int, Box]]) -> Dict[str, float]:
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for gt, hyp in zip(truth, tracked):
        gids, hids = list(gt), list(hyp)
        dist = mm.distances.iou_matrix([list(gt[g]) for g in gids], [list(hyp[h]) for h in hids],
                                       max_iou=0.5) if gids and hids else \
            np.empty((len(gids), len(hids)))
        acc.update(gids, hids, dist)
    summary = mm.metrics.create().compute(acc, metrics=["mota", "idf1", "num_switches"])
    return {k: float(summary[k].iloc[0]) for k in ("mota", "idf1", "num_switches")}


SCENES = [("noiseless", dict(miss=0.0, false_pos=0.0, noise=0.0)),
          ("10% missed, 5% false, 2 px", dict()),
          ("20% missed, 10% false, 4 px", dict(miss=0.2, false_pos=0.1, noise=4.0))]


def measure() -> List[Dict[str, Any]]:
    """One row a scene, seed and tracker: MOTA, IDF1 and ID switches."""
    rows = []
    for name, kw in SCENES:
        for seed in (1, 2, 3):
            dets, truth = scene(seed=seed, **kw)
            for who, tracked in (("vidpipe", run_tracker(dets)), ("supervision ByteTrack",
                                                                  run_peer(dets))):
                m = motmetrics(truth, tracked)
                rows.append({"scene": name, "seed": seed, "tracker": who, "mota": m["mota"],
                             "idf1": m["idf1"], "switches": int(m["num_switches"])})
    return rows


def main() -> None:
    rows = measure()
    if "--json" in sys.argv[1:]:  # for tests/bench/test_bench_smoke.py
        print(json.dumps(rows))
        return
    print("| scene | seed | tracker | MOTA | IDF1 | ID switches |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| {scene} | {seed} | {tracker} | {mota:.3f} | {idf1:.3f} | {switches:d} |".format(
            **row))


if __name__ == "__main__":
    main()
