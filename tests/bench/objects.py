"""What tracking, zones and lines cost the collector (issue 27: at most 1 ms
of CPU a frame at 30 fps with 50 objects). A scene of ``objects`` boxes
walking with jitter, three zones and three lines on a 1280x720 frame; the
detections are made before the clock starts, so only
``vidpipe.analytics.scene.Scene.observe`` is timed (process CPU time).

    python3 -m tests.bench.objects [--objects 50] [--frames 900]
"""

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from vidpipe.analytics.areas import parse  # noqa: E402
from vidpipe.analytics.scene import Scene  # noqa: E402


def frames_of(objects: int, frames: int, seed: int = 1) -> List[Dict[str, Any]]:
    rng = random.Random(seed)
    walkers = [[rng.uniform(0, 1200), rng.uniform(0, 600), rng.uniform(-4, 4),
                rng.uniform(-3, 3)] for _ in range(objects)]
    out = []
    for _ in range(frames):
        dets = []
        for w in walkers:
            w[0] = (w[0] + w[2]) % 1200
            w[1] = (w[1] + w[3]) % 600
            dets.append({"box": [w[0] + rng.gauss(0, 1), w[1] + rng.gauss(0, 1), 40, 80],
                         "label": "person", "confidence": round(rng.uniform(0.3, 0.95), 2)})
        out.append({"detections": dets})
    return out


def measure(objects: int = 50, frames: int = 900) -> Dict[str, float]:
    zones, lines = parse(
        {"left": {"points": [[0, 0], [600, 0], [600, 500], [0, 500]]},
         "right": {"points": [[600, 0], [1280, 0], [1280, 720], [600, 720]]},
         "middle": {"points": [[100, 100], [1100, 100], [1100, 600], [640, 650],
                               [100, 600]]}},
        {"v": {"points": [[640, 0], [640, 720]]}, "h": {"points": [[0, 360], [1280, 360]]},
         "d": {"points": [[0, 0], [1280, 720]]}}, 1280, 720)
    scene = Scene(zones, lines)
    metas = frames_of(objects, frames)
    events = 0
    began = time.process_time()
    for n, meta in enumerate(metas):
        scene.observe(meta, n * 33_333_333)
        events += len(meta["areas"])
    cpu = time.process_time() - began
    return {"objects": objects, "frames": frames, "ms_per_frame": 1000 * cpu / frames,
            "events": events, "tracks": scene.tracker.next_id - 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=50)
    parser.add_argument("--frames", type=int, default=900)
    args = parser.parse_args()
    r = measure(args.objects, args.frames)
    print("| objects a frame | frames | collector CPU a frame | events | track IDs |")
    print("|---|---|---|---|---|")
    print("| {objects} | {frames} | {ms_per_frame:.2f} ms | {events} | {tracks} |".format(**r))


if __name__ == "__main__":
    main()
