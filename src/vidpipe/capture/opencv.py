"""Sources read with OpenCV's ``VideoCapture``: video files, V4L2 cameras
(by path, or the first one found: ``source = "auto"``) and URLs through
OpenCV's FFmpeg backend (``decode = "ffmpeg"``, and ``"auto"`` where
GStreamer cannot decode a camera)."""

import logging
import os
from typing import Any, List, Optional, Tuple

import cv2
import numpy as np

from vidpipe import redact
from vidpipe.capture import cameras, naming, rtsp
from vidpipe.capture.base import Source, SourceError, probe, stream_url
from vidpipe.config import CameraConfig
from vidpipe.link.payload.limits import STREAM_MAX, fit, frame_pixels

log = logging.getLogger("vidpipe.sources")
#: what the FFmpeg path converts its BGR with, for each ``deliver``
CONVERT = {"gray": cv2.COLOR_BGR2GRAY, "i420": cv2.COLOR_BGR2YUV_I420}


class CaptureSource(Source):
    """Common ground of file, V4L2 and URL sources (all use cv2.VideoCapture)."""

    def __init__(self, camera: CameraConfig) -> None:
        super().__init__(camera)
        self.cap: Any = None
        self.count = 0

    def _capture(self) -> Any:
        raise NotImplementedError

    def open(self) -> None:
        self.close()
        cap = self._capture()
        if cap is None or not cap.isOpened():
            raise SourceError("cannot open {}".format(self.describe()))
        self.cap = cap
        self._configure(cap)
        self.info = {
            "width": int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            "height": int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
            "fps": round(float(cap.get(cv2.CAP_PROP_FPS) or 0.0), 3),
            "format": _fourcc_text(cap.get(cv2.CAP_PROP_FOURCC)),
        }

    def _configure(self, cap: Any) -> None:
        pass

    def _grab(self, out: Optional[np.ndarray]) -> Tuple[bool, Optional[np.ndarray]]:
        if self.cap is None:
            raise SourceError("{} is not open".format(self.describe()))
        if out is not None:
            ok, frame = self.cap.read(image=out)
        else:
            ok, frame = self.cap.read()
        return bool(ok) and frame is not None, frame

    def read(self) -> Optional[np.ndarray]:
        return self.read_into(None)  # type: ignore[arg-type]

    def read_into(self, out: Optional[np.ndarray]) -> Optional[np.ndarray]:
        ok, frame = self._grab(out)
        if not ok:
            return self._on_failure(out)
        self.count += 1
        return frame

    def _on_failure(self, out: Optional[np.ndarray]) -> Optional[np.ndarray]:
        raise SourceError("read from {} failed".format(self.describe()))

    def skip(self) -> None:
        if not self._grab(None)[0]:
            self._on_failure(None)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


def _fourcc_text(value: float) -> str:
    code = int(value)
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text if text.isprintable() and code else ""


class FileSource(CaptureSource):
    kind = "file"

    def __init__(self, camera: CameraConfig) -> None:
        super().__init__(camera)
        self.pace_fps = camera.fps

    def _capture(self) -> Any:
        return cv2.VideoCapture(self.camera.source)

    def _on_failure(self, out: Optional[np.ndarray]) -> Optional[np.ndarray]:
        if self.camera.loop and self.count:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._grab(out)
            if ok:
                self.count += 1
                return frame
        return None  # end of the file

    def read_into(self, out: Optional[np.ndarray]) -> Optional[np.ndarray]:
        if self.camera.frames and self.count >= self.camera.frames:
            return None
        return super().read_into(out)


class V4L2Source(CaptureSource):
    kind = "v4l2"
    live = True

    def __init__(self, camera: CameraConfig, device: Optional[str] = None) -> None:
        super().__init__(camera)
        self.device = device or camera.source

    def _capture(self) -> Any:
        node = os.path.realpath(self.device)
        if not os.path.exists(node):
            raise SourceError("{} does not exist (camera unplugged?)".format(self.device))
        return cv2.VideoCapture(node, cv2.CAP_V4L2)

    def _configure(self, cap: Any) -> None:
        cam = self.camera
        if cam.pixel_format:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*cam.pixel_format))
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, cam.width)
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cam.height)
        if cam.fps:
            cap.set(cv2.CAP_PROP_FPS, cam.fps)

    def open(self) -> None:
        super().open()
        cam = self.camera
        wanted = (cam.width, cam.height)
        got = (self.info["width"], self.info["height"])
        if wanted != got:
            log.warning("%s: asked for %dx%d, the camera gives %dx%d", self.device,
                        wanted[0], wanted[1], got[0], got[1])
        log.info("%s opened: %dx%d @ %s fps, format %s", self.device, got[0], got[1],
                 self.info["fps"], self.info["format"] or "?")

    def read_into(self, out: Optional[np.ndarray]) -> Optional[np.ndarray]:
        if self.camera.frames and self.count >= self.camera.frames:
            return None
        return super().read_into(out)

    def describe(self) -> str:
        return "camera {}".format(self.device)


class AutoSource(V4L2Source):
    """The first V4L2 capture device found (in the stable camera order)."""

    kind = "auto"

    def __init__(self, camera: CameraConfig) -> None:
        super().__init__(camera, device="")

    def open(self) -> None:
        # the device udev named after this camera, else the first one found
        self.device = naming.device_for(self.camera.name) or ""
        if not self.device:
            found = cameras.list_capture_devices()
            if not found:
                raise SourceError("no V4L2 capture device found (source = \"auto\")")
            self.device = found[0].best_path
        super().open()

    def describe(self) -> str:
        return "camera {}".format(self.device or "auto (none found yet)")


class URLSource(CaptureSource):
    """A network stream through OpenCV's FFmpeg backend: frames come at the
    configured size, or at the stream's own within the bound
    (:mod:`vidpipe.link.payload.limits`), scaled on the CPU when they differ."""

    kind = "url"
    live = True
    scale = False
    OPEN_TIMEOUT_MS = 5000
    READ_TIMEOUT_MS = 2000  # a silent camera is noticed this soon (3 frames at low rates)

    def _capture(self) -> Any:
        read_ms = max(self.READ_TIMEOUT_MS, int(3000 / self.camera.fps) if self.camera.fps else 0)
        params: List[int] = []
        for name, value in (("CAP_PROP_OPEN_TIMEOUT_MSEC", self.OPEN_TIMEOUT_MS),
                            ("CAP_PROP_READ_TIMEOUT_MSEC", read_ms)):
            if hasattr(cv2, name):
                params += [getattr(cv2, name), value]
        try:
            return cv2.VideoCapture(stream_url(self.camera), cv2.CAP_FFMPEG, params)
        except TypeError:  # OpenCV < 4.5.2 has no params argument
            return cv2.VideoCapture(stream_url(self.camera), cv2.CAP_FFMPEG)

    def open(self) -> None:
        """Open, refusing a stream over :data:`STREAM_MAX` before a
        frame of it is decoded; note whether its frames must be scaled."""
        super().open()
        width, height = self.info["width"], self.info["height"]
        self._too_large(width, height)
        self.scale = self._target(width, height) != (width, height)
        if self.scale:
            log.info("%s: the stream is %dx%d; scaling it to %dx%d", self.camera.name, width,
                     height, *self._target(width, height))

    def _too_large(self, width: int, height: int) -> None:
        if width * height > STREAM_MAX[0] * STREAM_MAX[1]:
            self.close()
            raise SourceError("{} sends {}x{} frames; vidpipe decodes none over {}x{}".format(
                self.describe(), width, height, *STREAM_MAX))

    def _target(self, width: int, height: int) -> Tuple[int, int]:
        """The size frames are handed out at: the configured size, as on the
        GStreamer path; without one, the stream's own, made to fit the bound."""
        cam = self.camera
        if cam.sized:
            return cam.width, cam.height
        return fit(width, height, frame_pixels(cam.width, cam.height, False))

    def _bounded(self, frame: np.ndarray) -> np.ndarray:
        height, width = frame.shape[:2]
        self._too_large(width, height)  # the stream changed size
        target = self._target(width, height)
        if target == (width, height):
            return frame
        return cv2.resize(frame, target, interpolation=cv2.INTER_AREA)

    def read_into(self, out: Optional[np.ndarray]) -> Optional[np.ndarray]:
        if self.camera.frames and self.count >= self.camera.frames:
            return None
        code = CONVERT.get(self.camera.deliver)
        if code is None and not self.scale:  # straight into the ring's slot
            return super().read_into(out)
        frame = super().read_into(None)  # type: ignore[arg-type]
        if frame is None:
            return None
        frame = self._bounded(frame)
        if code is None:
            if out is not None and out.shape == frame.shape:
                np.copyto(out, frame)
                return out
            return frame
        if code == cv2.COLOR_BGR2YUV_I420 and (frame.shape[0] % 2 or frame.shape[1] % 2):
            raise SourceError("{} sends {}x{} frames; deliver = \"i420\" needs an even size "
                              "(set width and height)".format(self.describe(), frame.shape[1],
                                                              frame.shape[0]))
        rows = frame.shape[0] * 3 // 2 if code == cv2.COLOR_BGR2YUV_I420 else frame.shape[0]
        if out is not None and out.shape == (rows, frame.shape[1]) and out.dtype == frame.dtype:
            return cv2.cvtColor(frame, code, dst=out)
        return cv2.cvtColor(frame, code)

    def check(self) -> Optional[rtsp.Answer]:
        return probe(self.camera)

    def describe(self) -> str:
        return "stream {}".format(redact.url(self.camera.source))
