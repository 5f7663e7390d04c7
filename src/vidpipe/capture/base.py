"""What every frame source is: it opens, reads one frame at a time and
closes. ``read()`` returns ``None`` at the end of a finite source and raises
:class:`SourceError` when a live source fails (unplugged camera, dropped
stream); the decoder then reopens it with back-off. Pacing is the decoder's
job: live sources are paced by the device, the others by ``pace_fps``.

Also here: what the network sources share, the camera's URL with its
credentials and the cheap RTSP look before an open.
"""

import re
from typing import Any, Dict, Optional

import numpy as np

from vidpipe.capture import rtsp
from vidpipe.config import CameraConfig, credentials

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


def stream_url(camera: CameraConfig) -> str:
    """The camera's URL with the user and password of its ``credentials_file``
    (read now: a changed password needs no reload); never logged."""
    if not camera.credentials_file:
        return camera.source
    try:
        return credentials.with_credentials(camera.source, camera.credentials_file)
    except (OSError, ValueError) as exc:
        raise SourceError("cameras.{}.credentials_file: {}".format(camera.name, exc)) from None


def probe(camera: CameraConfig) -> Optional[rtsp.Answer]:
    if not camera.source.lower().startswith(("rtsp://", "rtsps://")):
        return None
    return rtsp.probe(stream_url(camera))
