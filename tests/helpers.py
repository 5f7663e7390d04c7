"""Helpers the pipeline tests share (what a test module may import; test
modules never import each other). Fixtures and process plumbing are in
conftest.py."""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from vidpipe.sources import Source


def camera(frames: int, width: int = 640, height: int = 480, fps: float = 30,
           wait: int = 0, **extra: Any) -> Dict[str, Any]:
    cam = {"source": "testsrc", "width": width, "height": height, "fps": fps,
           "frames": frames, "wait_for_handlers": wait}
    cam.update(extra)
    return cam


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
