"""Helpers the pipeline tests share (what a test module may import; test
modules never import each other). Fixtures and process plumbing are in
conftest.py."""

import os
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

from vidpipe.capture.sources import Source


def camera(frames: int, width: int = 640, height: int = 480, fps: float = 30,
           wait: int = 0, **extra: Any) -> Dict[str, Any]:
    cam = {"source": "testsrc", "width": width, "height": height, "fps": fps,
           "frames": frames, "wait_for_handlers": wait}
    cam.update(extra)
    return cam


#: Debian's opencv-doc: pedestrians on a campus road, 768x576, 10 fps, 795 frames
VTEST = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


def vtest() -> str:
    """vtest.avi's path; outside CI a machine without opencv-doc skips the
    test, in CI (./dev test installs it) that is a failure."""
    if os.path.isfile(VTEST):
        return VTEST
    if os.environ.get("CI"):
        raise AssertionError("{} is missing: ./dev test installs opencv-doc".format(VTEST))
    pytest.skip("needs {} (Debian: apt install opencv-doc; ./dev test installs it)".format(VTEST))


def wait_exit(role: Any, timeout: float, pipeline: Any) -> int:
    try:
        return role.proc.wait(timeout)
    except Exception:
        raise AssertionError("{} {} did not finish in {}s\n{}".format(
            role.role, role.name, timeout, pipeline.logs())) from None


def accounted(records: List[Dict[str, Any]], cam: str) -> Dict[int, Dict[str, Any]]:
    """seq -> the record that accounts for it; fails on double accounting.

    A frame the collector gave up waiting for ("missing") is accounted by its
    drop notice, or else by its result arriving late."""
    out: Dict[int, Dict[str, Any]] = {}
    late: Dict[int, Dict[str, Any]] = {}
    for rec in records:
        if rec["camera"] != cam or rec["status"] == "missing":
            continue
        if rec.get("late"):
            assert rec["seq"] not in late, rec
            late[rec["seq"]] = rec
            continue
        assert rec["seq"] not in out, rec
        out[rec["seq"]] = rec
    for seq, rec in late.items():
        out.setdefault(seq, rec)  # a drop notice that came in time wins
    return out


#: why a frame may be dropped on a loaded box without the property a test is
#: about being touched: no handler had room for it, or it grew too old
LOAD_DROPS = ("no_capacity", "no_slot", "stale")


def load_drops_only(records: Dict[int, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The accounted records that are neither processed nor a drop for load
    (what a test must find none of)."""
    return [r for r in records.values() if r["status"] != "ok" and
            not (r["status"] == "dropped" and r.get("reason") in LOAD_DROPS)]


def in_order(records: List[Dict[str, Any]], cam: str) -> List[int]:
    return [r["seq"] for r in records if r["camera"] == cam and not r.get("late")
            and r["status"] != "missing"]


def rss_kb(pid: int) -> int:
    with open("/proc/{}/status".format(pid)) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Numbered(Source):
    """A source for in-process tests: frames of ``shape`` whose every pixel is
    the frame's number (mod 256); ``count`` of them, or without end."""

    kind = "numbered"

    def __init__(self, camera: Any, shape: Tuple[int, ...] = (8, 8),
                 count: Optional[int] = None) -> None:
        super().__init__(camera)
        self.shape, self.count, self.given = shape, count, 0

    def open(self) -> None:
        pass

    def read(self) -> Optional[np.ndarray]:
        if self.count is not None and self.given >= self.count:
            return None
        self.given += 1
        return np.full(self.shape, (self.given - 1) % 256, np.uint8)


class MjpegCamera:
    """A real HTTP camera on loopback: ``multipart/x-mixed-replace`` JPEG
    frames of ``width`` x ``height`` at ``fps`` to each client (as IP cameras'
    ``/video.mjpg``); counts the connections it was asked for."""

    def __init__(self, width: int, height: int, fps: float = 5.0) -> None:
        import http.server
        import threading

        import cv2
        import numpy as np

        image = np.full((height, width, 3), 90, np.uint8)
        image[::32] = 200  # stripes: a picture, still a small JPEG
        ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 30])
        assert ok
        jpeg = data.tobytes()
        camera = self
        self.connections = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                camera.connections += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not camera.closed:
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\n"
                                         b"Content-Length: %d\r\n\r\n" % len(jpeg) + jpeg + b"\r\n")
                        time.sleep(1.0 / fps)
                except OSError:
                    pass

            def log_message(self, *_args: Any) -> None:
                pass

        self.closed = False
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:{}/video.mjpg".format(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.closed = True
        self.server.shutdown()
        self.server.server_close()


def encodes_h264() -> bool:
    """Whether this interpreter's OpenCV can write H.264 through GStreamer's
    x264enc, found out without vidpipe: its build says GStreamer, and
    Debian's GStreamer has the element (the floor suites' pip OpenCV has no
    GStreamer: their recordings are mp4v, the fallback)."""
    import re
    import subprocess

    import cv2

    if not re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()):
        return False
    out = subprocess.run(["/usr/bin/python3", "-c", "import gi; gi.require_version('Gst', "
                          "'1.0'); from gi.repository import Gst; Gst.init(None); "
                          "print(Gst.ElementFactory.find('x264enc') is not None)"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         universal_newlines=True, timeout=60)
    return out.stdout.strip() == "True"
