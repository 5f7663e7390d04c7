"""What the collector does with results released in order: the outputs.

The :class:`Output` interface and the simple outputs are here:
``log``: nothing per frame (the collector logs a stats line per camera).
``jsonl``: one JSON object per frame (processed, dropped or missing) to a
file, the machine-readable record that tests and scripts read.
``display``: the seed's visualizer, a window per camera (needs a screen).

The others have a module each: ``preview`` (:mod:`.preview`, served by the
collector's HTTP server, :mod:`vidpipe.status.web`), ``record``
(:mod:`.recording`, MP4 and HDF5 segments; the HDF5 layout in
:mod:`.h5store`, which ``vidpipe tap --save`` shares), ``mqtt`` and ``amqp``
(:mod:`.mqtt`, :mod:`.amqp` over :mod:`.broker`).

Every output is built one way (:mod:`.assemble`): its class says what it
needs (:attr:`Output.REQUIRES`, checked before anything starts), where its
keys are (:attr:`Output.TABLE`, the ``[collector.TABLE]`` sub-table its
errors point at) and how it is made from the config (:meth:`Output.build`).
"""

import hashlib
import json
import os
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from vidpipe.link import wire
from vidpipe.config import CameraConfig, CollectorConfig
from vidpipe.link.ordering import OK, Entry


def bgr8(image: Any) -> Any:
    """``image`` as 8-bit BGR, what JPEG and MP4 encoders take (a new array
    unless it already is one)."""
    import cv2
    import numpy as np

    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 2:  # no colour model has two channels
        image = np.ascontiguousarray(image[:, :, 0])
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def picture(msg: wire.Message) -> Any:
    """A result's image as outputs show it: I420 (``deliver = "i420"``, no
    stage made another image) converted to BGR, anything else as it came."""
    image = msg.image()
    if msg.header.flags & wire.FLAG_I420:
        import cv2

        return cv2.cvtColor(image, cv2.COLOR_YUV2BGR_I420)
    return image


def frame_record(camera: str, entry: Entry, latency_ms: Optional[float],
                 checksum: bool = False) -> Dict[str, Any]:
    """What one frame came to, as the ``jsonl`` output writes it (and the
    ``amqp`` output's results stream publishes it): processed with its
    metadata, dropped with the reason, or a run of missing frames."""
    record: Dict[str, Any] = {"camera": camera, "seq": entry.seq, "status": entry.status}
    if entry.late:
        record["late"] = True
    if entry.status == OK:
        msg = entry.message
        record["capture_ns"] = msg.header.capture_ns
        record["latency_ms"] = None if latency_ms is None else round(latency_ms, 3)
        record["meta"] = msg.meta
        if msg.payload is not None and len(msg.payload):
            record["shape"] = list(msg.header.shape)
            if checksum:
                record["sha1"] = hashlib.sha1(msg.payload).hexdigest()
    elif entry.status == "dropped":
        record["reason"] = entry.reason
    else:
        record["count"] = entry.count
    return record


def no_figures(camera: str) -> Dict[str, Any]:
    return {}


class Requirement(NamedTuple):
    """A Python module an output needs that vidpipe does not depend on."""

    module: str   # what to import, e.g. "paho.mqtt.client"
    package: str  # the Debian package that has it, e.g. "python3-paho-mqtt"
    key: str      # the key that asks for it, e.g. "collector.outputs"


def needs(output: str, module: str, package: str) -> str:
    """What to tell an operator whose ``output`` lacks ``module``."""
    return "{!r} needs the {} module (Debian: apt install {})".format(
        output, module.split(".")[0], package)


class Site(NamedTuple):
    """What an output is built for besides its own keys: the configured cameras."""

    cameras: Mapping[str, CameraConfig]

    def names(self) -> List[str]:
        return sorted(self.cameras)

    def areas(self) -> Dict[str, Tuple[Sequence[str], Sequence[str]]]:
        """camera -> (its zone names, its line names), for cameras with any."""
        return {n: (sorted(c.zones), sorted(c.lines)) for n, c in self.cameras.items()
                if c.zones or c.lines}

    def clip_cameras(self) -> Dict[str, CameraConfig]:
        """The cameras whose events get clips (``clips``), by name."""
        return {n: c for n, c in self.cameras.items() if c.clips}

    def fps(self, camera: str) -> float:
        """``camera``'s configured frame rate (30 when it has none or is unknown)."""
        cam = self.cameras.get(camera)
        return cam.fps if cam is not None and cam.fps else 30.0


class Output:
    #: the name its status is shown under (``vidpipe status``, /metrics) and
    #: that ``collector.outputs`` lists
    name = ""
    #: the ``[collector.TABLE]`` sub-table holding its keys ("" for none)
    TABLE = ""
    #: (Python module, Debian package) it always needs beyond vidpipe's own
    #: dependencies; :meth:`requirements` adds what its keys ask for
    REQUIRES: Tuple[Tuple[str, str], ...] = ()
    #: the collector's figures for a camera, as its status board shows them
    #: (``frames``, ``dropped`` by reason, ``missing``, ``fps``,
    #: ``latency_p50_ms``/``p99``, ``areas``: zone and line counts); the
    #: collector sets it. An output shows these, never a count of its own.
    figures: Callable[[str], Dict[str, Any]] = staticmethod(no_figures)

    @classmethod
    def requirements(cls, cc: CollectorConfig) -> List[Requirement]:
        """What this output needs with ``cc`` (checked before any output is built)."""
        return [Requirement(module, package, "collector.outputs")
                for module, package in cls.REQUIRES]

    @classmethod
    def build(cls, cc: CollectorConfig, site: Site) -> "Output":
        """This output as ``cc`` configures it. Raises OSError, ValueError or
        RuntimeError when it cannot start (the collector runs without it)."""
        return cls()

    @classmethod
    def keys_to_check(cls, cc: CollectorConfig) -> str:
        """The keys (with their values) to look at when :meth:`build` failed."""
        return "[collector.{}]".format(cls.TABLE) if cls.TABLE else "collector.outputs"

    def bind(self, sockets: Any) -> None:
        """Bind the sockets it publishes on besides the results (the clip
        requests), from the collector's :class:`~vidpipe.link.sockets.Sockets`
        (Curve on tcp:// as configured); called once, when the collector starts."""

    def emit(self, camera: str, entry: Entry, latency_ms: Optional[float]) -> None:
        pass

    def status(self) -> Optional[Dict[str, Any]]:
        """What an operator should see of this output (``None``: nothing)."""
        return None

    def end_of_stream(self, camera: str) -> None:
        """Every frame of ``camera``'s stream has been emitted."""

    def scene_ended(self, camera: str, found: List[Dict[str, Any]]) -> None:
        """``camera``'s stream ended with objects still tracked: their ``object``
        end and zone exit events (no frame carries them), before :meth:`end_of_stream`."""

    def forget(self, camera: str) -> None:
        """The collector forgot ``camera`` (one the config does not name,
        silent while others needed its place): end it as at the end of its
        stream and let go of what is kept for it, so made-up camera names
        cannot grow an output's state."""
        self.end_of_stream(camera)

    def close(self) -> None:
        pass


class LogOutput(Output):
    """Nothing per frame: the collector logs each camera's figures as it goes."""

    name = "log"


class JsonlOutput(Output):
    name = "jsonl"
    TABLE = "jsonl"

    @classmethod
    def build(cls, cc: CollectorConfig, site: Site) -> "Output":
        return cls(cc.jsonl_path, cc.jsonl_checksum)

    @classmethod
    def keys_to_check(cls, cc: CollectorConfig) -> str:
        return "collector.jsonl.path = {}".format(cc.jsonl_path)

    def __init__(self, path: str, checksum: bool) -> None:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        self.handle = open(path, "a", buffering=1, encoding="utf-8")
        self.checksum = checksum

    def emit(self, camera: str, entry: Entry, latency_ms: Optional[float]) -> None:
        record = frame_record(camera, entry, latency_ms, self.checksum)
        self.handle.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self.handle.close()


class DisplayOutput(Output):
    """``cv2.imshow`` per camera; 'q' in a window closes the displays."""

    name = "display"

    @classmethod
    def build(cls, cc: CollectorConfig, site: Site) -> "Output":
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            raise RuntimeError("it needs a screen ($DISPLAY is not set)")
        return cls()

    def __init__(self) -> None:
        import cv2

        self.cv2 = cv2
        self.open = True

    def emit(self, camera: str, entry: Entry, latency_ms: Optional[float]) -> None:
        if not self.open or entry.status != OK or entry.late or entry.message.payload is None \
                or not len(entry.message.payload):
            return
        self.cv2.imshow("vidpipe " + camera, picture(entry.message))
        if self.cv2.waitKey(1) & 0xFF == ord("q"):
            self.close()

    def close(self) -> None:
        if self.open:
            self.open = False
            self.cv2.destroyAllWindows()
