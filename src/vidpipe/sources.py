"""Frame sources: the built-in test pattern, video files, V4L2 cameras, URLs.

A source opens, reads one frame at a time and closes. ``read()`` returns
``None`` at the end of a finite source and raises :class:`SourceError` when a
live source fails (unplugged camera, dropped stream); the decoder then
reopens it with back-off. Pacing is the decoder's job: live sources are paced
by the device, the others by ``pace_fps``.
"""

import logging
import os
import re
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from vidpipe import cameras, credentials, gstreamer, naming, redact, rtsp
from vidpipe.config import CameraConfig, ConfigError
from vidpipe.payload.limits import STREAM_MAX, fit, frame_pixels

log = logging.getLogger("vidpipe.sources")
URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class SourceError(Exception):
    """A live source could not be opened or read; the decoder retries."""


class Source:
    live = False
    kind = "?"

    def __init__(self, camera: CameraConfig) -> None:
        self.camera = camera
        self.pace_fps = 0.0
        self.info: Dict[str, Any] = {}

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> Optional[np.ndarray]:
        raise NotImplementedError

    def read_into(self, out: np.ndarray) -> Optional[np.ndarray]:
        """Read the next frame, into ``out`` where the source can (zero copy)."""
        frame = self.read()
        if frame is None or frame.shape != out.shape or frame.dtype != out.dtype:
            return frame
        np.copyto(out, frame)
        return out

    def skip(self) -> None:
        """Read a frame and let it go, not counted against ``frames`` (a live
        source's frames before the stream starts)."""
        self.read()

    def check(self) -> Optional[rtsp.Answer]:
        """A cheap look before opening: is the camera there and willing
        (``None``: this source cannot tell, just open it)."""
        return None

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "{} {}".format(self.kind, self.camera.source)


# --------------------------------------------------------------------------
# Test pattern

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


# --------------------------------------------------------------------------
# OpenCV VideoCapture based sources


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
    (:mod:`vidpipe.payload.limits`), scaled on the CPU when they differ."""

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
        return _probe(self.camera)

    def describe(self) -> str:
        return "stream {}".format(redact.url(self.camera.source))


#: ``deliver`` -> the GStreamer path's caps format, the source's fourcc, and
#: what the FFmpeg path converts its BGR with
PIXELS = {"bgr": "BGR", "gray": "GRAY8", "i420": "I420"}
FOURCC = {"bgr": "BGR3", "gray": "GREY", "i420": "YU12"}
CONVERT = {"gray": cv2.COLOR_BGR2GRAY, "i420": cv2.COLOR_BGR2YUV_I420}


def stream_url(camera: CameraConfig) -> str:
    """The camera's URL with the user and password of its ``credentials_file``
    (read now: a changed password needs no reload); never logged."""
    if not camera.credentials_file:
        return camera.source
    try:
        return credentials.with_credentials(camera.source, camera.credentials_file)
    except (OSError, ValueError) as exc:
        raise SourceError("cameras.{}.credentials_file: {}".format(camera.name, exc)) from None


def _probe(camera: CameraConfig) -> Optional[rtsp.Answer]:
    if not camera.source.lower().startswith(("rtsp://", "rtsps://")):
        return None
    return rtsp.probe(stream_url(camera))


class GstSource(Source):
    """A network stream (or file:// URL) through a GStreamer pipeline built for
    this box (:mod:`vidpipe.gstreamer`): hardware decoding where there is
    some, scaled and rated to the camera's width/height/fps before frames
    are handed out. A read waits at most READ_TIMEOUT_S (longer only when
    fewer than 2 frames a second are asked for): a camera that went silent
    without closing the connection is noticed."""

    kind = "gstreamer"
    live = True
    OPEN_TIMEOUT_S = 10.0  # connect, negotiate, first key frame
    READ_TIMEOUT_S = 1.5

    def __init__(self, camera: CameraConfig) -> None:
        super().__init__(camera)
        self.choice: Optional[gstreamer.Choice] = None
        self.player: Optional[gstreamer.Player] = None
        self.first: Optional[np.ndarray] = None
        self.answer: Optional[rtsp.Answer] = None
        self.count = 0
        if camera.source.lower().startswith("file://"):  # a file: paced, like FileSource
            self.live = False
            self.pace_fps = camera.fps

    def check(self) -> Optional[rtsp.Answer]:
        self.answer = _probe(self.camera)
        return self.answer

    def codec(self) -> str:
        """The configured codec, else the one the camera's answer (or, for a
        file, GStreamer's discoverer) names; SourceError when none is known."""
        cam = self.camera
        if cam.codec != "auto":
            return cam.codec
        if self.answer is None and cam.source.lower().startswith("file://"):
            found = gstreamer.file_codec(cam.source)
        else:
            found = self.answer.codec if self.answer is not None else ""
        if found not in gstreamer.CODECS:
            raise SourceError("cannot open {}: {}; set cameras.{}.codec (or decode = "
                              "\"ffmpeg\")".format(self.describe(), "its codec is {}".format(
                                  gstreamer.codec_text(found)) if found else
                                  "it did not say its codec", cam.name))
        return found

    def open(self) -> None:
        """Open at the configured size, else at the stream's own; a stream
        over the bound (:mod:`vidpipe.payload.limits`) is opened again,
        scaled to fit it, and one over ``STREAM_MAX`` is refused."""
        cam = self.camera
        self._open(*((cam.width, cam.height) if cam.sized else (0, 0)))
        height, width = self.first.shape[:2]  # type: ignore[union-attr]
        if cam.deliver == "i420":
            height = height * 2 // 3
        if width * height > STREAM_MAX[0] * STREAM_MAX[1]:
            self.close()
            raise SourceError("{} sends {}x{} frames; vidpipe decodes none over {}x{}".format(
                self.describe(), width, height, *STREAM_MAX))
        fits = fit(width, height, frame_pixels(cam.width, cam.height, cam.sized))
        if fits != (width, height):
            log.info("%s: the stream is %dx%d; scaling it to %dx%d", cam.name, width, height,
                     *fits)
            self._open(*fits)

    def _open(self, width: int, height: int) -> None:
        """Open the pipeline, scaling to ``width`` x ``height`` (0: the stream's size)."""
        self.close()
        cam = self.camera
        timeout = max(self.READ_TIMEOUT_S, 3.0 / cam.fps if cam.fps else 0.0)
        decode = "auto" if cam.decode in ("auto", "ffmpeg") else cam.decode
        # the decoders' own I420, converted by OpenCV (videoconvert to BGR
        # cost ~7 times as much at 1080p); an odd size cannot be I420 (a
        # stream's own size is even: a frame of odd size is refused, naming it)
        native = not (width % 2 or height % 2)
        try:
            self.choice = gstreamer.choose(self.codec(), decode, gstreamer.element_exists)
            # the description holds the URL and so perhaps a password: never logged
            self.player = gstreamer.Player(gstreamer.describe_pipeline(
                # a file is paced by the decoder at fps, a camera thinned to it
                stream_url(cam), self.choice, width, height,
                cam.fps if self.live else 0.0, cam.rtsp_transport, cam.rtsp_latency_ms,
                pixels="I420" if native else PIXELS[cam.deliver],
                exists=gstreamer.element_exists, timeout_s=timeout), self.OPEN_TIMEOUT_S,
                deliver=cam.deliver)
            self.first = self.player.read()
        except (gstreamer.NoDecoder, gstreamer.PlayerError) as exc:
            self.close()
            raise SourceError("cannot open {}: {}".format(self.describe(), exc)) from None
        self.player.timeout_ns = int(timeout * 1e9)
        height, width = self.first.shape[:2]
        self.info = {"width": width, "height": height, "fps": cam.fps,
                     "format": FOURCC[cam.deliver],
                     "decoder": self.choice.text()}
        log.info("%s: delivering %dx%d", self.describe(), width, height)

    def _next(self, out: Optional[np.ndarray]) -> Optional[np.ndarray]:
        if self.player is None:
            raise SourceError("{} is not open".format(self.describe()))
        if self.first is not None:
            frame, self.first = self.first, None
            if out is not None and out.shape == frame.shape:
                np.copyto(out, frame)
                return out
            return frame
        try:
            return self.player.read(out)
        except gstreamer.StreamEnded:
            if not URL_RE.match(self.camera.source) or \
                    self.camera.source.lower().startswith("file://"):
                return None  # the end of a file
            raise SourceError("{} ended".format(self.describe())) from None
        except gstreamer.PlayerError as exc:
            raise SourceError("read from {} failed: {}".format(self.describe(), exc)) from None

    def read(self) -> Optional[np.ndarray]:
        return self.read_into(None)  # type: ignore[arg-type]

    def read_into(self, out: Optional[np.ndarray]) -> Optional[np.ndarray]:
        if self.camera.frames and self.count >= self.camera.frames:
            return None
        frame = self._next(out)
        if frame is not None:
            self.count += 1
        return frame

    def skip(self) -> None:
        self._next(None)

    def close(self) -> None:
        if self.player is not None:
            self.player.close()
            self.player = None
        self.first = None

    def describe(self) -> str:
        how = self.choice.text() if self.choice else "gstreamer, decode = " + self.camera.decode
        return "stream {} ({})".format(redact.url(self.camera.source), how)


class StreamSource(Source):
    """``decode = "auto"`` on a network camera: GStreamer's pipeline for this
    box when GStreamer can decode the camera's codec here, else OpenCV's
    FFmpeg backend, the reason logged once. Decided at each open: the codec
    comes from the camera's answer to the probe."""

    kind = "url"
    live = True

    def __init__(self, camera: CameraConfig) -> None:
        super().__init__(camera)
        self.gst = GstSource(camera)
        self.ffmpeg = URLSource(camera)
        self.active: Optional[Source] = None
        self.told = ""

    def check(self) -> Optional[rtsp.Answer]:
        return self.gst.check()

    def open(self) -> None:
        self.close()
        cam = self.camera
        codec = cam.codec if cam.codec != "auto" else \
            (self.gst.answer.codec if self.gst.answer is not None else "")
        why = gstreamer.unusable(codec, gstreamer.element_exists)
        chosen: Source = self.ffmpeg if why else self.gst
        if why and why != self.told:
            log.info("%s: decoding with OpenCV's FFmpeg: %s", cam.name, why)
        self.told = why
        chosen.count = max(self.gst.count, self.ffmpeg.count)  # type: ignore[attr-defined]
        chosen.open()
        self.active = chosen
        self.info = dict(chosen.info)
        if why:
            self.info.update(decoder="decoding with OpenCV FFmpeg", why_not_gstreamer=why)

    def _source(self) -> Source:
        if self.active is None:
            raise SourceError("{} is not open".format(self.describe()))
        return self.active

    def read(self) -> Optional[np.ndarray]:
        return self._source().read()

    def read_into(self, out: np.ndarray) -> Optional[np.ndarray]:
        return self._source().read_into(out)

    def skip(self) -> None:
        self._source().skip()

    def close(self) -> None:
        if self.active is not None:
            self.active.close()
            self.active = None

    def describe(self) -> str:
        if self.active is self.ffmpeg:
            return "{} (OpenCV FFmpeg: {})".format(self.ffmpeg.describe(), self.told)
        if self.active is not None:
            return self.active.describe()
        return "stream {} (decode = auto)".format(redact.url(self.camera.source))


def make_source(camera: CameraConfig, config_path: str = "") -> Source:
    """The source named by ``camera.source``; a missing file is a config error."""
    src = camera.source
    if src == "testsrc":
        return PatternSource(camera)
    if src == "auto":
        return AutoSource(camera)
    if src.startswith("/dev/"):
        return V4L2Source(camera)
    if URL_RE.match(src):
        if camera.decode == "ffmpeg":
            return URLSource(camera)
        if camera.decode == "auto":
            network = src.lower().startswith(("rtsp://", "rtsps://"))
            return StreamSource(camera) if network else URLSource(camera)
        return GstSource(camera)
    if not os.path.isfile(src):
        raise ConfigError(config_path, "cameras.{}.source".format(camera.name),
                          "{!r} is not 'auto', 'testsrc', a /dev/ device, a URL or an "
                          "existing video file".format(src))
    return FileSource(camera)
