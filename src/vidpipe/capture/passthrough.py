"""Passthrough recording: a network camera's stream kept as the camera sent
it (``record = "passthrough"``).

The H.264 or H.265 stream of ``record_url`` (the camera's main stream; by
default its ``source``) is written to MP4 segments without being decoded or
encoded again: ``rtspsrc`` -> depayloader -> parser -> ``splitmuxsink``
(``mp4mux``), a new segment at the first key frame after
``[collector.record] segment_s`` seconds. The MP4s are fragmented (a
fragment a second), so a segment cut short -- the camera rebooted, the power
went -- plays up to its last second instead of being lost for want of an
index. They go where the processed recordings go, as

    [collector.record] dir/CAMERA/CAMERA-<UTC time>-<number>.camera.mp4

(``.camera.part.mp4`` while written), and the collector's retention keeps
them within ``max_bytes``, ``max_age_s`` and ``min_free_mb`` with the rest.

The recorder runs in the camera's decoder process, in a thread of its own
with its own connection to the camera, its own reconnect (with back-off) and
its own status: the analysis stream (``source``, often the camera's small
sub-stream) and the recording come and go apart. Nothing it meets stops the
decoder: a stream that is not H.264/H.265, a camera away, a full disk are a
status and a retry.
"""

import datetime
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, Optional

from vidpipe import names, redact
from vidpipe.capture import rtsp
from vidpipe.capture.clips import Clips, Packet
from vidpipe.capture.gstreamer import CODECS, PlayerError, codec_text, gst_modules
from vidpipe.config import CameraConfig, CollectorConfig, credentials
from vidpipe.safefile import create_new, settle

log = logging.getLogger("vidpipe.passthrough")
#: a closed segment's name: CAMERA-<UTC time>-<number>.camera.mp4
SUFFIX = ".camera.mp4"
PART_SUFFIX = ".camera.part.mp4"
BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)
FREE_CHECK_S = 5.0
POLL_NS = 200 * 1000 * 1000
STOP_WAIT_S = 3.0


class RecordError(Exception):
    """Why the recording stopped (the camera, the stream, the disk)."""


class Resized(Exception):
    """The camera changed its picture's size: the segment ends there and the
    recording starts again at once (an MP4 holds one size)."""


def record_url(camera: CameraConfig) -> str:
    """The URL recorded: ``record_url``, else the camera's ``source``."""
    return camera.record_url or camera.source


def describe_pipeline(url: str, codec: str, segment_s: float, transport: str = "tcp",
                      latency_ms: int = 200, timeout_s: float = 5.0,
                      clips: bool = False) -> str:
    """The ``gst-launch`` description: no decoder in it, only parsers. With
    ``clips`` the parsed packets also go to an appsink (``packets``), for the
    pre-roll of event clips; a leaky queue keeps it from ever holding the
    recording back."""
    protocols = {"tcp": "tcp", "udp": "udp", "auto": "tcp+udp"}[transport]
    quoted = '"{}"'.format(url.replace("\\", "\\\\").replace('"', '\\"'))
    fork = " ! tee name=t ! queue ! " if clips else " ! "
    tail = (" t. ! queue leaky=downstream max-size-time=0 max-size-buffers=0 "
            "max-size-bytes=16777216 ! appsink name=packets sync=false emit-signals=true "
            "max-buffers=0") if clips else ""
    return ("rtspsrc location={} protocols={} latency={} timeout={} tcp-timeout={} ! "
            "rtp{}depay ! {}parse name=parse config-interval=-1{}splitmuxsink name=mux "
            "muxer-factory=mp4mux muxer-properties=\"properties,fragment-duration=1000\" "
            "max-size-time={} async-finalize=false{}").format(
                quoted, protocols, int(latency_ms), int(timeout_s * 1e6),
                int(timeout_s * 1e6), codec, codec, fork, int(segment_s * 1e9), tail)


class Recorder:
    """Records one camera's stream while it runs (:meth:`start`, :meth:`stop`)."""

    def __init__(self, camera: CameraConfig, cc: CollectorConfig,
                 free_bytes: Optional[Callable[[str], int]] = None,
                 sockets: Optional[Any] = None) -> None:
        if not names.valid(camera.name):  # it becomes a path
            raise ValueError("camera name {!r} is not a valid name".format(camera.name))
        self.camera = camera
        self.folder = os.path.join(cc.record_dir, camera.name)
        self.segment_s = cc.record_segment_s
        self.min_free = cc.record_min_free_mb * 2 ** 20
        self.free_bytes = free_bytes or _free_bytes
        self.state = "starting"
        self.last_error = ""
        self.segments = 0  # closed since start
        self.bytes = 0
        self.current = ""  # the .part file being written
        self.number = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="passthrough", daemon=True)
        #: event clips cut from the stream (cameras.NAME.clips), told by the collector
        self.clips = Clips(camera.name, self.folder, camera.preroll_s, sockets, cc.clips,
                           self._space) if camera.clips and sockets is not None else None
        self._codec_now = ""
        self._new_run = False
        self._size = (0, 0)  # the picture's, in this run
        self._resized = ""  # why this run ends (set in the streaming thread)

    # ------------------------------------------------------------------ the decoder's side

    def start(self) -> None:
        self.thread.start()
        if self.clips is not None:
            self.clips.start()

    def stop(self) -> None:
        """End the segment being written cleanly and stop (at most a few seconds)."""
        self._stop.set()
        self.thread.join(STOP_WAIT_S + 2.0)
        if self.clips is not None:
            self.clips.stop()

    def status(self) -> Dict[str, Any]:
        clips = {"clips": self.clips.status()} if self.clips is not None else {}
        with self.lock:
            return dict({"state": self.state, "segments": self.segments, "bytes": self.bytes,
                         "error": self.last_error}, **clips)

    def text(self) -> str:
        """For the decoder's STATUS line."""
        clips = ", {} clips".format(self.clips.counts["written"]) if self.clips is not None \
            else ""
        with self.lock:
            if self.state == "recording":
                return "recording the camera's stream ({} segments{})".format(self.segments,
                                                                              clips)
            return "recording {}".format(self.state)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._record_once()
            except Resized as exc:
                log.info("%s: recording: %s; a new segment", self.camera.name, exc)
                continue
            except RecordError as exc:
                self._set("waiting: {}".format(exc), str(exc))
                if failures == 0 or time.monotonic() - started > 60:
                    log.error("%s: recording: %s", self.camera.name, exc)
            except Exception as exc:  # noqa: BLE001 - the decoder must go on whatever this meets
                self._set("waiting: internal error", repr(exc))
                log.exception("%s: recording failed", self.camera.name)
            if self._stop.is_set():
                break
            failures = 0 if time.monotonic() - started > 60 else failures + 1
            self._stop.wait(BACKOFF_S[min(failures, len(BACKOFF_S) - 1)])
        self._set("stopped", self.last_error)

    def _set(self, state: str, error: str = "") -> None:
        with self.lock:
            self.state = state
            self.last_error = error

    def _codec(self, url: str) -> str:
        cam = self.camera
        if cam.codec != "auto":
            return cam.codec
        answer = rtsp.probe(url)
        if not answer.up:
            raise RecordError("{}: {}".format(redact.url(record_url(cam)), answer.reason))
        found = answer.codec
        if found not in CODECS:
            raise RecordError("{} sends {}; passthrough records H.264 and H.265 only "
                              "(cameras.{}.record_url)".format(
                                  redact.url(record_url(cam)),
                                  codec_text(found) if found else "no codec it names",
                                  cam.name))
        return found

    def _url(self) -> str:
        cam = self.camera
        url = record_url(cam)
        if not cam.credentials_file:
            return url
        try:
            return credentials.with_credentials(url, cam.credentials_file)
        except (OSError, ValueError) as exc:
            raise RecordError("cameras.{}.credentials_file: {}".format(cam.name, exc)) \
                from None

    def _record_once(self) -> None:
        self._check_space()
        url = self._url()
        codec = self._codec(url)
        try:
            Gst = gst_modules()[0]
        except PlayerError as exc:
            raise RecordError(str(exc)) from None
        self._set("connecting")
        try:
            pipeline = Gst.parse_launch(describe_pipeline(
                url, codec, self.segment_s, self.camera.rtsp_transport,
                self.camera.rtsp_latency_ms, clips=self.clips is not None))
        except Exception as exc:  # GLib.Error: an element missing
            raise RecordError("the recording pipeline does not build: {} (Debian: "
                              "gstreamer1.0-plugins-good has rtspsrc, mp4mux and "
                              "splitmuxsink, gstreamer1.0-plugins-bad h264parse and "
                              "h265parse)".format(getattr(exc, "message", exc))) from None
        pipeline.get_by_name("mux").connect("format-location", self._next_path)
        self._size, self._resized = (0, 0), ""
        pipeline.get_by_name("parse").get_static_pad("src").add_probe(
            Gst.PadProbeType.EVENT_DOWNSTREAM | Gst.PadProbeType.BUFFER, self._watch_size, Gst)
        if self.clips is not None:
            self._codec_now, self._new_run = codec, True
            pipeline.get_by_name("packets").connect("new-sample", self._packet, Gst)
        bus = pipeline.get_bus()
        try:
            if pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
                raise RecordError(_reason(Gst, bus) or "the recording would not start")
            self._watch(Gst, pipeline, bus)
        finally:
            pipeline.set_state(Gst.State.NULL)
            self._close_current()

    def _watch(self, Gst: Any, pipeline: Any, bus: Any) -> None:
        kinds = Gst.MessageType.ERROR | Gst.MessageType.EOS | Gst.MessageType.ELEMENT
        next_check = time.monotonic() + FREE_CHECK_S
        while True:
            if self._stop.is_set() or self._resized:
                pipeline.send_event(Gst.Event.new_eos())  # the muxer ends its fragment
                bus.timed_pop_filtered(int(STOP_WAIT_S * 1e9),
                                       Gst.MessageType.EOS | Gst.MessageType.ERROR)
                if self._resized and not self._stop.is_set():
                    raise Resized(self._resized)
                return
            if time.monotonic() > next_check:
                next_check = time.monotonic() + FREE_CHECK_S
                self._check_space()
            message = bus.timed_pop_filtered(POLL_NS, kinds)
            if message is None:
                continue
            if message.type == Gst.MessageType.ERROR:
                err, _debug = message.parse_error()
                raise RecordError("{} ({})".format(err.message, message.src.get_name()
                                                   if message.src else "?"))
            if message.type == Gst.MessageType.EOS:
                raise RecordError("the camera ended the stream")
            structure = message.get_structure()
            if structure is None:
                continue
            if structure.get_name() == "splitmuxsink-fragment-opened":
                self._set("recording")
            elif structure.get_name() == "splitmuxsink-fragment-closed":
                self._finish(structure.get_value("location"))

    def _watch_size(self, _pad: Any, info: Any, Gst: Any) -> Any:
        """On the parser's output (streaming thread): once the stream's
        picture size changes, nothing more of it goes on (the watch loop ends
        the segment and starts again)."""
        if info.type & Gst.PadProbeType.BUFFER:
            return Gst.PadProbeReturn.DROP if self._resized else Gst.PadProbeReturn.OK
        event = info.get_event()
        if event is None or event.type != Gst.EventType.CAPS:
            return Gst.PadProbeReturn.OK
        if self._resized:
            return Gst.PadProbeReturn.DROP
        structure = event.parse_caps().get_structure(0)
        size = (structure.get_int("width")[1], structure.get_int("height")[1])
        if self._size == (0, 0) or 0 in size:
            self._size = size if 0 not in size else self._size
        elif size != self._size:
            self._resized = "the camera changed its picture from {}x{} to {}x{}".format(
                *(self._size + size))
            return Gst.PadProbeReturn.DROP
        return Gst.PadProbeReturn.OK

    def _packet(self, sink: Any, Gst: Any) -> Any:
        """A packet of the camera's stream for the clips' pre-roll (in the
        pipeline's streaming thread: quick, never raises)."""
        try:
            sample = sink.emit("pull-sample")
            if sample is None:
                return Gst.FlowReturn.OK
            clips = self.clips
            assert clips is not None
            if self._new_run:
                self._new_run = False
                clips.new_stream(Gst, self._codec_now, sample.get_caps())
            buf = sample.get_buffer()
            none = Gst.CLOCK_TIME_NONE
            clips.packet(Packet(time.time_ns(), not buf.has_flags(Gst.BufferFlags.DELTA_UNIT),
                                -1 if buf.pts == none else buf.pts,
                                -1 if buf.dts == none else buf.dts,
                                -1 if buf.duration == none else buf.duration,
                                buf.extract_dup(0, buf.get_size())))
        except Exception:  # noqa: BLE001 - the recording goes on without its clips
            log.exception("%s: event clips: a packet was lost", self.camera.name)
        return Gst.FlowReturn.OK

    def _space(self) -> str:
        """Why nothing may be written now ("" when it may)."""
        free = self.free_bytes(self.folder if os.path.isdir(self.folder)
                               else os.path.dirname(self.folder))
        if free < self.min_free:
            return ("{} MB free under {}, below [collector.record] min_free_mb; "
                    "waiting for retention to make room".format(
                        free // 2 ** 20, os.path.dirname(self.folder)))
        return ""

    def _check_space(self) -> None:
        why = self._space()
        if why:
            raise RecordError(why)

    def _next_path(self, _mux: Any, _fragment: int) -> str:
        """splitmuxsink asks where its next segment goes: a new file of ours,
        made here (O_EXCL, no link followed) before the muxer opens it."""
        self._close_current()
        os.makedirs(self.folder, mode=0o750, exist_ok=True)
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        while True:
            self.number += 1
            path = os.path.join(self.folder, "{}-{}-{:06d}{}".format(
                self.camera.name, stamp, self.number, PART_SUFFIX))
            try:
                create_new(path)
            except FileExistsError:
                continue
            except OSError as exc:
                log.error("%s: recording: cannot make %s: %s", self.camera.name, path, exc)
                return path  # the muxer fails on it: an error, then a retry
            break
        with self.lock:
            self.current = path
        return path

    def _finish(self, part: Any) -> None:
        """A segment the muxer closed: give it its final name."""
        with self.lock:
            if not isinstance(part, str) or part != self.current:
                return
            self.current = ""
        final = part[:-len(PART_SUFFIX)] + SUFFIX
        try:
            size = settle(part, final)
        except OSError as exc:
            log.error("%s: recording: cannot close %s: %s", self.camera.name, part, exc)
            return
        if size == 0:
            return
        with self.lock:
            self.segments += 1
            self.bytes += size
        log.info("%s: recorded %s (%d bytes)", self.camera.name, final, size)

    def _close_current(self) -> None:
        """The segment being written, as far as it got (a fragmented MP4
        plays up to its last whole fragment)."""
        with self.lock:
            part = self.current
        if part:
            self._finish(part)


def _reason(Gst: Any, bus: Any) -> str:
    message = bus.pop_filtered(Gst.MessageType.ERROR)
    if message is None:
        return ""
    err, _debug = message.parse_error()
    return err.message


def _free_bytes(path: str) -> int:
    try:
        st = os.statvfs(path)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def make_recorder(camera: CameraConfig, cc: CollectorConfig,
                  sockets: Optional[Any] = None) -> Optional[Recorder]:
    """The camera's recorder, if it records passthrough (with its event
    clips, told by the collector over ``sockets``, if it has any)."""
    return Recorder(camera, cc, sockets=sockets) if camera.record == "passthrough" else None

