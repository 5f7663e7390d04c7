"""GStreamer's decode pipelines, run: :class:`Player` (GStreamer's own
Python bindings) hands out the frames of the pipeline that
:mod:`vidpipe.capture.gstreamer` describes, and :class:`GstSource` is the
source a camera with ``decode`` other than ``ffmpeg`` reads through."""

import logging
from typing import Any, Optional, Tuple

import numpy as np

from vidpipe import redact
from vidpipe.capture import gstreamer, rtsp
from vidpipe.capture.base import URL_RE, Source, SourceError, probe, stream_url
from vidpipe.capture.gstreamer import SINK, PlayerError, StreamEnded, gst_modules
from vidpipe.config import CameraConfig
from vidpipe.link.payload.limits import STREAM_MAX, fit, frame_pixels
from vidpipe.link.pixels import full_to_video_range, i420_planes, luma_to_gray

log = logging.getLogger("vidpipe.sources")
#: ``deliver`` -> the GStreamer path's caps format, and the source's fourcc
PIXELS = {"bgr": "BGR", "gray": "GRAY8", "i420": "I420"}
FOURCC = {"bgr": "BGR3", "gray": "GREY", "i420": "YU12"}


def _packed_i420(info: Any, src: Any, into: Optional[Any] = None) -> Any:
    """An I420 buffer (planes at GStreamer's offsets and strides) as one
    packed array of height*3/2 rows: Y, then U and V (OpenCV's layout) -- a
    view on the buffer when it is laid out so already, else a copy (into
    ``into``, a contiguous array of that shape, when given: a decoder that
    pads its planes costs one copy, not two; avdec_h264 gave tight buffers
    at 320x240 and 1080p here)."""
    import numpy as np

    height, width = info.height, info.width
    planes = [(height, width)] + [(height // 2, width // 2)] * 2
    at, contiguous = 0, True
    for plane, (rows, cols) in enumerate(planes):
        offset, stride = info.offset[plane], info.stride[plane]
        if offset < 0 or stride < cols or offset + (rows - 1) * stride + cols > len(src):
            # never read past the buffer, whatever the caps say
            raise PlayerError("an I420 frame whose plane {} does not fit its buffer ({} "
                              "bytes)".format(plane, len(src)))
        contiguous &= offset == at and stride == cols
        at += rows * cols
    if contiguous:
        return src[:at].reshape(height * 3 // 2, width)
    shape = (height * 3 // 2, width)
    packed = into if into is not None and into.shape == shape else np.empty(shape, np.uint8)
    for plane, view in enumerate(i420_planes(packed)):
        view[...] = np.lib.stride_tricks.as_strided(src[info.offset[plane]:], view.shape,
                                                    (info.stride[plane], 1))
    return packed


class Player:
    """Runs a pipeline description and hands out its frames as arrays; a
    read waits at most ``timeout_s``; an error names GStreamer's reason
    (e.g. ``Unauthorized``) without the URL (which may hold a password)."""

    def __init__(self, description: str, timeout_s: float = 5.0, deliver: str = "i420") -> None:
        self.Gst, self.GstApp, self.GstVideo = gst_modules()
        self.timeout_ns = int(timeout_s * 1e9)
        #: what I420 samples become: "i420" (packed), "bgr" or "gray" (OpenCV
        #: converts: ~7x less CPU than videoconvert at 1080p)
        self.deliver = deliver
        try:
            self.pipeline = self.Gst.parse_launch(description)
        except Exception as exc:  # GLib.Error: a bad description or a missing element
            raise PlayerError("the pipeline does not build: {}".format(
                getattr(exc, "message", exc))) from None
        self.sink = self.pipeline.get_by_name(SINK)
        self.bus = self.pipeline.get_bus()
        self.shape: Tuple[int, ...] = ()
        self._video: Optional[Any] = None  # a full-range frame made video range
        if self.pipeline.set_state(self.Gst.State.PLAYING) == \
                self.Gst.StateChangeReturn.FAILURE:
            self.close()
            raise PlayerError(self._reason() or "the pipeline would not start")

    def _reason(self) -> str:
        message = self.bus.pop_filtered(self.Gst.MessageType.ERROR | self.Gst.MessageType.EOS)
        if message is None:
            return ""
        if message.type == self.Gst.MessageType.EOS:
            raise StreamEnded("the stream ended")
        err, _debug = message.parse_error()
        return "{} ({})".format(err.message, message.src.get_name() if message.src else "?")

    def read(self, out: Optional[Any] = None) -> Any:
        """The next frame (into ``out`` when it fits); :class:`PlayerError`
        when none came within the timeout or the stream failed."""
        import numpy as np

        sample = self.sink.try_pull_sample(self.timeout_ns)
        if sample is None:
            if self.sink.is_eos():
                raise StreamEnded("the stream ended")
            reason = self._reason()
            raise PlayerError(reason or "no frame for {:g} s".format(self.timeout_ns / 1e9))
        info = self.GstVideo.VideoInfo.new_from_caps(sample.get_caps())
        channels = 1 if info.finfo.format == self.GstVideo.VideoFormat.GRAY8 else 3
        height, width, stride = info.height, info.width, info.stride[0]
        buffer = sample.get_buffer()
        ok, mapped = buffer.map(self.Gst.MapFlags.READ)
        if not ok:
            raise PlayerError("a frame buffer could not be mapped")
        try:
            if info.finfo.format == self.GstVideo.VideoFormat.I420:
                return self._i420(info, mapped.data, out)
            shape = (height, width) if channels == 1 else (height, width, channels)
            view = np.ndarray(shape, np.uint8, buffer=mapped.data,
                              strides=(stride, channels, 1)[:len(shape)])
            self.shape = shape
            if out is not None and out.shape == shape and out.dtype == np.uint8:
                np.copyto(out, view)
                return out
            return view.copy()
        finally:
            buffer.unmap(mapped)

    def _i420(self, info: Any, data: Any, out: Optional[Any]) -> Any:
        """An I420 sample as :attr:`deliver` asks (into ``out`` when it fits)."""
        import cv2
        import numpy as np

        height, width = info.height, info.width
        if height % 2 or width % 2:
            raise PlayerError("an I420 frame of odd size {}x{}; set the camera's width and "
                              "height (even)".format(width, height))
        # full range (a JPEG-style stream, as many IP cameras send): luma is gray
        # as it is; what goes on as I420 or through OpenCV is made video range
        full = info.colorimetry.range == getattr(self.GstVideo.VideoColorRange, "0_255")
        shape = {"bgr": (height, width, 3), "gray": (height, width)}.get(
            self.deliver, (height * 3 // 2, width))
        self.shape = shape
        target = out if out is not None and out.shape == shape and out.dtype == np.uint8 \
            and out.flags["C_CONTIGUOUS"] else np.empty(shape, np.uint8)
        packed = _packed_i420(info, np.frombuffer(data, np.uint8),
                              into=target if self.deliver == "i420" and not full else None)
        if packed is target:  # copied into it already
            return target
        if self.deliver == "gray":
            luma = i420_planes(packed)[0]
            if full:
                np.copyto(target, luma)
                return target
            return luma_to_gray(luma, target)
        if self.deliver == "bgr":
            if full:
                if self._video is None or self._video.shape != packed.shape:
                    self._video = np.empty(packed.shape, np.uint8)
                packed = full_to_video_range(packed, self._video)
            return cv2.cvtColor(packed, cv2.COLOR_YUV2BGR_I420, dst=target)
        if full:  # into the target, off the buffer (unmapped after)
            return full_to_video_range(packed, target)
        np.copyto(target, packed)  # off the buffer, which is unmapped after
        return target

    def close(self) -> None:
        self.pipeline.set_state(self.Gst.State.NULL)


class GstSource(Source):
    """A network stream (or file:// URL) through a GStreamer pipeline built for
    this box (:mod:`vidpipe.capture.gstreamer`): hardware decoding where there is
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
        self.player: Optional[Player] = None
        self.first: Optional[np.ndarray] = None
        self.answer: Optional[rtsp.Answer] = None
        self.count = 0
        if camera.source.lower().startswith("file://"):  # a file: paced, like FileSource
            self.live = False
            self.pace_fps = camera.fps

    def check(self) -> Optional[rtsp.Answer]:
        self.answer = probe(self.camera)
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
        over the bound (:mod:`vidpipe.link.payload.limits`) is opened again,
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
            self.player = Player(gstreamer.describe_pipeline(
                # a file is paced by the decoder at fps, a camera thinned to it
                stream_url(cam), self.choice, width, height,
                cam.fps if self.live else 0.0, cam.rtsp_transport, cam.rtsp_latency_ms,
                pixels="I420" if native else PIXELS[cam.deliver],
                exists=gstreamer.element_exists, timeout_s=timeout), self.OPEN_TIMEOUT_S,
                deliver=cam.deliver)
            self.first = self.player.read()
        except (gstreamer.NoDecoder, PlayerError) as exc:
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
        except StreamEnded:
            if not URL_RE.match(self.camera.source) or \
                    self.camera.source.lower().startswith("file://"):
                return None  # the end of a file
            raise SourceError("{} ended".format(self.describe())) from None
        except PlayerError as exc:
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
