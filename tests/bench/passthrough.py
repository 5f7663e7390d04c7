"""Cameras a box holds when it keeps what the camera sent (issue 28): per
camera CPU of "record the 1080p30 main stream as it came (passthrough) +
analyse the 640x360 sub-stream at 5 fps with the motion stage" against the
way without passthrough, "decode the 1080p30 stream + analyse it with the
motion stage + record the processed frames" (the collector's ``record``
output, MP4: ``mp4v`` as before, and H.264, the default now), side by side
in one run.

Two real RTSP test cameras (GStreamer's RTSP server, H.264: 1920x1080 at 30
fps, the main stream; 640x360 at 30 fps, the sub-stream) serve both runs;
their encoders' CPU is not counted, only vidpipe's processes' (decoder,
handler, collector, read from /proc between the first and the last frame's
capture). ``cameras held`` is this box's cores over one camera's CPU share
(what the box could carry if nothing else ran: the decoders, handlers and
collector of N cameras cost N times one's).

    python3 -m tests.bench.passthrough [--seconds 20]
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from vidpipe.tools.bench import run_vidpipe  # noqa: E402
from vidpipe.tools.measure import free_port  # noqa: E402

CAMERA = ROOT / "tests" / "rtsp_camera.py"
MAIN = (1920, 1080, 30)
SUB = (640, 360, 30)
ANALYSE_FPS = 5


class Camera:
    """The RTSP test camera at one size, in a process of its own."""

    def __init__(self, width: int, height: int, fps: int) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(["/usr/bin/python3", str(CAMERA), str(self.port),
                                      str(width), str(height), str(fps)],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     universal_newlines=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.close()
            raise RuntimeError("the RTSP test camera did not start (./dev test installs "
                               "gir1.2-gst-rtsp-server-1.0): " + line)

    def url(self) -> str:
        return "rtsp://127.0.0.1:{}/h264".format(self.port)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def one_run(label: str, seconds: float, camera: Dict[str, Any],
            collector: Dict[str, Any]) -> Dict[str, Any]:
    records: List[Dict[str, Any]] = []
    fps = camera["fps"]
    res = run_vidpipe("640x480", 1, fps, int(fps * seconds), timeout=seconds * 4 + 60,
                      stages={"motion": {"width": 320}},
                      camera_keys=dict(camera, prerender=None, wait_for_handlers=1),
                      collector=collector, records_out=records)
    # one process of each role: its CPU ms per frame, times the frames a second
    cores = sum(res.cpu_ms.values()) * fps / 1000.0
    return {"run": label, "frames": res.received, "dropped": res.dropped,
            "cpu_ms": dict(res.cpu_ms), "cores": round(cores, 3),
            "held": round((os.cpu_count() or 1) / cores, 1) if cores else None}


def measure(seconds: float = 20.0, codecs: Sequence[str] = ("mp4v",)) -> Dict[str, Any]:
    """The passthrough run, then a decode-everything run per codec of the
    processed recording (``mp4v`` what vidpipe wrote before H.264; ``h264``
    its default now where GStreamer's x264enc is there)."""
    main, sub = Camera(*MAIN), Camera(*SUB)
    try:
        with tempfile.TemporaryDirectory(prefix="vpkeep-") as folder:
            record = {"dir": folder, "min_free_mb": 0, "segment_s": 10}
            keep = one_run("passthrough 1080p30 + analyse 640x360 at 5 fps", seconds,
                           {"source": sub.url(), "width": SUB[0], "height": SUB[1],
                            "fps": ANALYSE_FPS, "record": "passthrough",
                            "record_url": main.url()},
                           {"record": record})
            kept = sorted(p.name for p in Path(folder).rglob("*.camera.mp4"))
            decode = [one_run("decode 1080p30 + analyse + record processed ({})".format(codec),
                              seconds, {"source": main.url(), "width": MAIN[0],
                                        "height": MAIN[1], "fps": MAIN[2]},
                              {"outputs": ["jsonl", "record"],
                               "record": dict(record, codec=codec)}) for codec in codecs]
            processed = sorted(p.name for p in Path(folder).rglob("*.mp4")
                               if not p.name.endswith(".camera.mp4"))
    finally:
        main.close()
        sub.close()
    ratio = decode[0]["cores"] / keep["cores"] if keep["cores"] else None
    return {"runs": [keep] + decode, "ratio": round(ratio, 2) if ratio else None,
            "camera_segments": kept, "processed_segments": processed,
            "cpus": os.cpu_count()}


def table(result: Dict[str, Any]) -> str:
    lines = ["| per camera | CPU (cores) | decoder / handler / collector ms a frame | "
             "frames | cameras held on {} cores |".format(result["cpus"]),
             "|---|---|---|---|---|"]
    for r in result["runs"]:
        ms = r["cpu_ms"]
        lines.append("| {} | {:.3f} | {} / {} / {} | {} ({} dropped) | {} |".format(
            r["run"], r["cores"], ms.get("decoder"), ms.get("handler"), ms.get("collector"),
            r["frames"], r["dropped"], r["held"]))
    lines.append("\npassthrough holds {}x the cameras of the first decoding run".format(
        result["ratio"]))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--codecs", default="mp4v,h264",
                        help="the processed recording's codecs, a decoding run each")
    args = parser.parse_args(argv)
    print(table(measure(args.seconds, args.codecs.split(","))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
