"""The built-in test pattern (``source = "testsrc"``): moving, numbered
frames whose every pixel is known, rendered without a camera."""

from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from vidpipe.capture.base import Source
from vidpipe.config import CameraConfig

_BASES: Dict[Tuple[int, int], np.ndarray] = {}


def _base(width: int, height: int) -> np.ndarray:
    key = (width, height)
    if key not in _BASES:
        xs = np.linspace(0, 255, width, dtype=np.float32)
        ys = np.linspace(0, 255, height, dtype=np.float32)
        base = np.empty((height, width, 3), np.uint8)
        base[:, :, 0] = xs[None, :]
        base[:, :, 1] = ys[:, None]
        base[:, :, 2] = 96
        _BASES[key] = base
    return _BASES[key]


def render_testsrc(index: int, width: int, height: int,
                   out: Optional[np.ndarray] = None) -> np.ndarray:
    """Frame ``index`` of the test pattern: a gradient, a box moving across it
    and the frame number. A pure function of its arguments, so tests can
    recompute exactly what a decoder sent."""
    frame = out if out is not None else np.empty((height, width, 3), np.uint8)
    np.copyto(frame, _base(width, height))
    box = max(8, min(width, height) // 6)
    span_x = max(1, width - box)
    span_y = max(1, height - box)
    x = (index * 7) % span_x
    y = (index * 3) % span_y
    cv2.rectangle(frame, (x, y), (x + box - 1, y + box - 1), (255, 255, 255), -1)
    scale = max(0.5, height / 240.0)
    cv2.putText(frame, "#{}".format(index), (8, int(30 * scale)), cv2.FONT_HERSHEY_SIMPLEX,
                scale, (0, 0, 0), max(1, int(2 * scale)), cv2.LINE_8)
    return frame


class PatternSource(Source):
    kind = "testsrc"

    def __init__(self, camera: CameraConfig) -> None:
        super().__init__(camera)
        self.index = 0
        self.pace_fps = camera.fps
        self.frames: List[np.ndarray] = []

    def open(self) -> None:
        self.info = {"width": self.camera.width, "height": self.camera.height,
                     "fps": self.camera.fps, "format": "BGR3"}
        # prerender = N: draw N frames now and cycle them, so that reading costs
        # one copy, like a camera filling a buffer (benchmarks exclude source cost)
        cam = self.camera
        self.frames = [render_testsrc(i, cam.width, cam.height) for i in range(cam.prerender)]

    def _next(self, out: Optional[np.ndarray]) -> Optional[np.ndarray]:
        limit = self.camera.frames
        if limit and self.index >= limit and not self.camera.loop:
            return None
        if self.frames:
            ready = self.frames[self.index % len(self.frames)]
            frame = ready.copy() if out is None else out
            if out is not None:
                np.copyto(out, ready)
        else:
            frame = render_testsrc(self.index, self.camera.width, self.camera.height, out)
        self.index += 1
        return frame

    def read(self) -> Optional[np.ndarray]:
        return self._next(None)

    def read_into(self, out: np.ndarray) -> Optional[np.ndarray]:
        if out.shape != (self.camera.height, self.camera.width, 3):
            return self.read()
        return self._next(out)

    def describe(self) -> str:
        return "testsrc {}x{}".format(self.camera.width, self.camera.height)
