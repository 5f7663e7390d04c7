"""Decoder capacity for 1080p H.264: CPU ms per frame and how many 30 fps
cameras one decoder core holds, OpenCV's FFmpeg path against the GStreamer
path (software decoding here: ``avdec_h264``), the latter with and without
scaling to 640x360 in the decode pipeline.

    python3 -m tests.bench.decode               # 300 frames of 1920x1080
    python3 -m tests.bench.decode --frames 90

Each path decodes the same clip (a moving test pattern encoded once with
x264, cached under /tmp) as fast as it can, through vidpipe's own sources, in
this process: CPU seconds (all threads) / frames is the cost of a frame,
and 30 fps / (frames per CPU second) says how many cameras a core takes.
The FFmpeg path is the baseline, from the same run. A clip stands in for
the camera so that the encoder's cost stays out of the figures; the RTSP
depayloading a camera adds is small next to decoding. A benchmark, not a
test: it prints a markdown table (docs/performance.md quotes it)."""

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from vidpipe.capture import gstreamer  # noqa: E402
from vidpipe.config import CameraConfig  # noqa: E402
from vidpipe.capture.sources import make_source  # noqa: E402

WIDTH, HEIGHT, FPS = 1920, 1080, 30


def clip(frames: int) -> Path:
    """A 1080p30 H.264 MP4 of ``frames`` frames (made once, with x264, by
    GStreamer in this process: no gst-launch tool needed)."""
    path = Path("/tmp/vidpipe-bench-{}x{}-{}.mp4".format(WIDTH, HEIGHT, frames))
    if not path.exists():
        part = path.with_suffix(".{}.part.mp4".format(os.getpid()))  # suites side by side
        encode("videotestsrc num-buffers={} pattern=ball ! video/x-raw,width={},height={},"
               "framerate={}/1 ! x264enc speed-preset=ultrafast key-int-max={} ! h264parse ! "
               "mp4mux ! filesink location={}".format(frames, WIDTH, HEIGHT, FPS, FPS, part))
        os.rename(str(part), str(path))
    return path


def encode(description: str, timeout_s: float = 600.0) -> None:
    """Run a GStreamer pipeline to its end (an error raises, naming it)."""
    Gst = gstreamer.gst_modules()[0]  # noqa: N806
    pipeline = Gst.parse_launch(description)
    pipeline.set_state(Gst.State.PLAYING)
    try:
        message = pipeline.get_bus().timed_pop_filtered(
            int(timeout_s * 1e9), Gst.MessageType.EOS | Gst.MessageType.ERROR)
        if message is None:
            raise RuntimeError("encoding took over {:g} s: {}".format(timeout_s, description))
        if message.type == Gst.MessageType.ERROR:
            raise RuntimeError("encoding failed: {}".format(message.parse_error()[0].message))
    finally:
        pipeline.set_state(Gst.State.NULL)


def measure(path: Path, decode: str, width: int, height: int,
            deliver: str = "bgr") -> Dict[str, float]:
    source = make_source(CameraConfig(name="bench", source="file://{}".format(path)
                                      if decode != "ffmpeg" else str(path),
                                      decode=decode, width=width, height=height, fps=0,
                                      deliver=deliver))
    source.open()
    frames, shape = 0, None
    cpu0, wall0 = time.process_time(), time.monotonic()
    try:
        while True:
            frame = source.read()
            if frame is None:
                break
            frames += 1
            shape = frame.shape
    finally:
        source.close()
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    ms = 1000.0 * cpu / max(frames, 1)
    return {"frames": frames, "cpu_ms": round(ms, 2), "fps": round(frames / wall, 1),
            "cameras_per_core": round(1000.0 / ms / FPS, 2) if ms else 0.0,
            "shape": "-" if not shape else "{}x{}{}".format(
                shape[1], shape[0] * 2 // 3 if deliver == "i420" else shape[0],
                " I420" if deliver == "i420" else "")}


PATHS = [("OpenCV FFmpeg (baseline)", "ffmpeg", WIDTH, HEIGHT, "bgr"),
         ("GStreamer avdec_h264", "software", WIDTH, HEIGHT, "bgr"),
         ("GStreamer avdec_h264, scaled in the decoder", "software", 640, 360, "bgr"),
         ("GStreamer avdec_h264, scaled, deliver = \"gray\"", "software", 640, 360, "gray"),
         ("GStreamer avdec_h264, deliver = \"i420\"", "software", WIDTH, HEIGHT, "i420"),
         ("GStreamer avdec_h264, scaled, deliver = \"i420\"", "software", 640, 360, "i420")]


def run(frames: int) -> List[Dict[str, object]]:
    path = clip(frames)
    out = []
    for name, decode, width, height, deliver in PATHS:
        out.append(dict(measure(path, decode, width, height, deliver), path=name))
    return out


def table(rows: List[Dict[str, object]]) -> str:
    base = float(rows[0]["cpu_ms"]) or 1.0  # type: ignore[arg-type]
    lines = ["| 1080p30 H.264 | delivers | CPU ms / frame | vs FFmpeg | 30 fps cameras per "
             "core | decode fps (one decoder) |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append("| {path} | {shape} | {cpu_ms} | {ratio:.2f} | {cameras_per_core} | {fps} |"
                     .format(ratio=float(row["cpu_ms"]) / base, **row))  # type: ignore
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args(argv)
    rows = run(args.frames)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
