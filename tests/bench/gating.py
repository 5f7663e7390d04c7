"""What ``detect_fps`` and ``detect_when`` save a handler (issue 27: on a
scene that is still most of the time, ``detect_fps = 5`` with the motion
gate cuts the handler's CPU per camera by 3x or more against detecting
every frame).

One camera, 30 fps, 640x360 (a camera's sub-stream, what issue 28
analyses): a clip of a still room (a textured wall, the same pixels frame
after frame) that something crosses for a tenth of the time. Stages
``motion`` (on a 320-pixel gray copy: ``width = 320``) then ``faces``
(OpenCV's Haar cascade: the detector), one handler; the same clip three
times, side by side in one run: detecting every frame, then ``detect_fps =
5`` with ``detect_when = "motion"``, then with ``"motion-region"`` (the
detector looks only around what moved). The handler's CPU is read from
/proc between the first and the last frame's capture (start-up and the
cascade's loading left out).

    python3 -m tests.bench.gating [--frames 300]
"""

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from vidpipe.tools.bench import run_vidpipe  # noqa: E402

FPS = 30
WIDTH, HEIGHT = 640, 360
RUNS = {"every frame": {},
        "detect_fps 5, detect_when motion": {"detect_fps": 5, "detect_when": "motion"},
        "detect_fps 5, detect_when motion-region": {"detect_fps": 5,
                                                    "detect_when": "motion-region"}}


def still_scene(path: Path, frames: int) -> Path:
    """A still wall for 9 frames in 10; in the middle tenth a bright
    square walks across it."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(3)
    wall = cv2.GaussianBlur(rng.integers(40, 200, (HEIGHT, WIDTH, 3), dtype=np.uint8), (5, 5), 0)
    start, end = int(frames * 0.45), int(frames * 0.55)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    for n in range(frames):
        frame = wall.copy()
        if start <= n < end:
            x = int((n - start) * (WIDTH - 60) / max(1, end - start - 1))
            cv2.rectangle(frame, (x, 150), (x + 60, 210), (255, 255, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def measure(frames: int = 300) -> Dict[str, Dict[str, Any]]:
    out: Dict[str, Dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="vpgate-") as tmp:
        clip = still_scene(Path(tmp) / "still.avi", frames)
        for label, keys in RUNS.items():
            records: List[Dict[str, Any]] = []
            res = run_vidpipe("640x480", 1, FPS, frames,
                              stages={"motion": {"width": 320}, "faces": {}},
                              camera_keys=dict(keys, source=str(clip), width=WIDTH,
                                               height=HEIGHT, frames=None, prerender=None),
                              records_out=records, prerender=0)
            ok = [r for r in records if r["status"] == "ok" and not r.get("late")]
            out[label] = {"frames": len(ok),
                          "dropped": sum(1 for r in records if r["status"] == "dropped"),
                          "detected": sum(1 for r in ok if "faces" in r["meta"]),
                          "in_region": sum(1 for r in ok if "detect_regions" in r["meta"]),
                          "moved": sum(1 for r in ok if r["meta"].get("motion", {}).get("boxes")),
                          "handler_ms": res.cpu_ms.get("handler"),
                          # where a frame's time went in the handler, on average
                          "stages_ms": {stage: round(sum(r["meta"]["timings_ms"].get(stage, 0.0)
                                                         for r in ok) / max(1, len(ok)), 3)
                                        for stage in ("receive", "motion", "faces")}}
    every = out["every frame"]
    for label in list(RUNS)[1:]:
        if every["handler_ms"] and out[label]["handler_ms"]:
            out[label]["ratio"] = round(every["handler_ms"] / out[label]["handler_ms"], 2)
    return out


def table(out: Dict[str, Dict[str, Any]]) -> str:
    lines = ["| camera | frames processed | detector ran on | frames with motion | "
             "receive, motion, faces a frame | handler CPU a frame | less than every frame |",
             "|---|---|---|---|---|---|---|"]
    for label, r in out.items():
        lines.append("| {} | {} | {} | {} | {} ms | {} ms | {} |".format(
            label, r["frames"], r["detected"], r["moved"],
            ", ".join("{:.2f}".format(v) for v in r["stages_ms"].values()), r["handler_ms"],
            "{}x".format(r["ratio"]) if "ratio" in r else "-"))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    print(table(measure(parser.parse_args().frames)))


if __name__ == "__main__":
    main()
