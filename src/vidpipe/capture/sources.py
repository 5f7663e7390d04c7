"""Frame sources: the built-in test pattern, video files, V4L2 cameras, URLs;
:func:`make_source` picks the one a camera's ``source`` names.

=================  =====================================================
``testsrc``        :mod:`.pattern`
a file, ``/dev/``  :mod:`.opencv` (OpenCV ``VideoCapture``)
``auto``           :mod:`.opencv` (the first V4L2 camera found)
a URL              :mod:`.gstplayer` (GStreamer, per ``decode``) or
                   :mod:`.opencv` (``decode = "ffmpeg"``), or both:
                   :class:`StreamSource` (``decode = "auto"``)
=================  =====================================================

What every source is: :mod:`.base`.
"""

import logging
import os
from typing import Optional

import numpy as np

from vidpipe import redact
from vidpipe.capture import gstreamer, rtsp
from vidpipe.capture.base import URL_RE, Source, SourceError
from vidpipe.capture.gstplayer import GstSource
from vidpipe.capture.opencv import AutoSource, FileSource, URLSource, V4L2Source
from vidpipe.capture.pattern import PatternSource, render_testsrc
from vidpipe.config import CameraConfig, ConfigError

log = logging.getLogger("vidpipe.sources")

__all__ = ["AutoSource", "FileSource", "GstSource", "PatternSource", "Source", "SourceError",
           "StreamSource", "URLSource", "V4L2Source", "make_source", "render_testsrc"]


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
