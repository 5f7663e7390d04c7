"""What the broker outputs (``mqtt``, ``amqp``) share: events, state,
snapshots and results made from the in-order stream, handed to a thread of
their own through a bounded queue, kept in a disk spool until the broker
acknowledged them.

The collector's thread only calls :meth:`BrokerOutput.emit`, which tracks
events (:mod:`vidpipe.outputs.events`) and puts messages on a bounded queue: it
never waits for the network or the disk (a full queue is counted as
``dropped_queue``). The output's publisher thread moves what is queued into
the spool (:mod:`.spool`: events fsynced, results dropped first when it is
full), then calls :meth:`BrokerOutput.service`, where a subclass publishes
what the spool holds, in order, and acknowledges each record the broker
confirmed (:meth:`BrokerOutput.acked`). So nothing is lost while the broker
is away, across a collector crash or a reboot; a message whose
acknowledgement was lost is sent again, with the same event ``id``.

What is published (events, state, snapshots, results; JSON of schema
version 1) and where is the contract in docs/outputs.md.

Each subclass says where they go (:meth:`BrokerOutput.address`).
"""

import importlib
import json
import logging
import os
import queue
import re
import socket
import ssl
import threading
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from vidpipe.config import CameraConfig, CollectorConfig
from vidpipe.outputs.clips import name_clip
from vidpipe.outputs.events import VERSION, Tracker
from vidpipe.link.ordering import OK, Entry
from vidpipe.outputs import Output, Site, bgr8, frame_record, needs, picture
from vidpipe.outputs.spool import EVENT, RESULT, STATE, Spool, SpoolError
from vidpipe.names import one_line
from vidpipe.stats import Tally, Throttle

log = logging.getLogger("vidpipe.broker")
QUEUE = 10000  # messages between the collector's thread and the publisher
#: camera -> (its zone names, its line names): what the state message counts
Areas = Mapping[str, Tuple[Sequence[str], Sequence[str]]]
#: spool kind of each stream: what is dropped first when the spool is full
KIND = {"events": EVENT, "state": STATE, "snapshot": STATE, "results": RESULT}
#: the outputs that spool (and so share collector.spool.max_mb)
KIND_OUTPUTS = ("mqtt", "amqp")


def spool_share(cc: CollectorConfig) -> int:
    """Each broker output's part of ``collector.spool.max_mb``: the limit is
    for all of them together, on disk, shared evenly."""
    brokers = [name for name in cc.outputs if name in KIND_OUTPUTS] or ["one"]
    return max(1 << 20, (cc.spool_max_mb << 20) // len(brokers))


def require(output: Output) -> Any:
    """The client library ``output`` needs (imported only when the output is
    built), or an ImportError naming the Debian package."""
    module, package = output.REQUIRES[0]
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(needs(output.name, module, package)) from None


def jpeg_under(image: Any, max_bytes: int) -> Optional[bytes]:
    """``image`` as a JPEG of at most ``max_bytes``: lower quality first,
    then smaller; ``None`` if even a small one does not fit."""
    import cv2

    image = bgr8(image)
    for scale in (1.0, 0.5, 0.25):
        if scale < 1.0:
            if min(image.shape[:2]) < 2:  # nothing smaller to make
                break
            image = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
        for quality in (85, 60, 35):
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
            if ok and len(data) <= max_bytes:
                return data.tobytes()
    return None


CERT_RE = re.compile(r"certificate verify failed: ([^(]{1,120}?) ?\(_ssl")


def untrusted_certificate(error: str, key: str) -> Optional[str]:
    """The state for a TLS error text that says the broker's certificate did
    not verify (retrying will not help: the operator's CA file is wrong)."""
    found = CERT_RE.search(error)
    if not found:
        return None
    return "refused: TLS certificate not trusted ({}; {})".format(found.group(1), key)


def tls_problem(host: str, port: int, ca_file: str, key: str, timeout: float = 3.0) -> str:
    """Why a TLS connection to a broker fails, found by one handshake of our
    own (a client library that retries in its thread may not say)."""
    context = ssl.create_default_context(cafile=ca_file or None)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            with context.wrap_socket(sock, server_hostname=host):
                return "unreachable (TLS works; the broker closed the connection)"
    except ssl.SSLError as exc:
        return untrusted_certificate(str(exc), key) or "unreachable (TLS: {})".format(
            exc.reason or exc)
    except OSError as exc:
        return "unreachable ({})".format(exc.strerror or exc)


class Message:
    """One spooled message: where it goes, what it says, and how."""

    __slots__ = ("stream", "address", "payload", "retain", "headers")

    def __init__(self, stream: str, address: str, payload: bytes, retain: bool = False,
                 headers: Optional[Dict[str, Any]] = None) -> None:
        self.stream, self.address, self.payload = stream, address, payload
        self.retain, self.headers = retain, headers or {}

    @property
    def content_type(self) -> str:
        return "image/jpeg" if self.stream == "snapshot" else "application/json"

    def pack(self) -> bytes:
        head = json.dumps({"s": self.stream, "a": self.address, "r": self.retain,
                           "h": self.headers}, separators=(",", ":")).encode()
        return head + b"\n" + self.payload

    @classmethod
    def unpack(cls, record: bytes) -> "Message":
        head, _, payload = record.partition(b"\n")
        doc = json.loads(head.decode("utf-8"))
        return cls(doc["s"], doc["a"], payload, bool(doc.get("r")), doc.get("h"))


class _CameraState:
    def __init__(self) -> None:
        self.last_sent = 0.0
        self.last_seq = self.last_ns = 0  # the last processed frame (for objects at the end)


def scene_event(camera: str, seq: int, capture_ns: int, found: Dict[str, Any]) -> Dict[str, Any]:
    """An ``object``, ``zone`` or ``line`` event as published (docs/outputs.md):
    what the collector's scene found, with the frame it was found on and an id
    that is the same when the record is sent again."""
    where = found.get("zone") or found.get("line") or ""
    event_id = "{}-{}-{}-{}-{}-{}".format(camera, found["type"], where, found.get("action") or
                                          found.get("direction"), found["track"], seq)
    return dict(found, v=VERSION, id=event_id, camera=camera, seq=seq, capture_ns=capture_ns,
                time=round(time.time(), 3))


class BrokerOutput(Output):
    """The shared half; a subclass connects, publishes and says where each
    stream goes. It calls :meth:`start` once its client is set up."""

    @classmethod
    def build(cls, cc: CollectorConfig, site: Site) -> Output:
        out = cls(cc, site.names(), areas=site.areas())  # type: ignore[call-arg]
        out.clip_cameras = site.clip_cameras()
        return out

    @classmethod
    def keys_to_check(cls, cc: CollectorConfig) -> str:
        # the spool and the credentials file: what can keep a broker output from starting
        return "collector.spool.dir = {}, collector.{}.credentials_file = {}".format(
            cc.spool_dir, cls.TABLE, getattr(cc, cls.TABLE + "_credentials_file") or '""')

    def __init__(self, cc: CollectorConfig, cameras: Optional[List[str]] = None,
                 results: bool = False, areas: Optional[Areas] = None) -> None:
        self.known = list(cameras or [])
        self.areas: Areas = dict(areas or {})  # camera -> (zone names, line names)
        self.configured = frozenset(self.known)
        #: the cameras whose events get clips (vidpipe.outputs.clips): their
        #: events name the clip
        self.clip_cameras: Dict[str, CameraConfig] = {}
        self.results = results
        self.tracker = Tracker(cc.events_min_frames, cc.events_end_after_s, cc.events_update_s)
        self.snapshot_bytes = cc.events_snapshot_kb * 1024
        self.state_period = 1.0 / cc.state_hz if cc.state_hz > 0 else 0.0
        self.cameras: Dict[str, _CameraState] = {}
        # queued, published, acked, dropped_queue, spool_full, snapshot_too_big
        self.counts = Tally()
        self.queue: "queue.Queue[Tuple[str, str, Any, bool, Dict[str, Any]]]" = \
            queue.Queue(QUEUE)
        self.spool = Spool(os.path.join(cc.spool_dir, self.name), spool_share(cc))
        self.spool_drops = 0  # drops the log has been told of
        self.connected = False
        self.state = "connecting"
        self.throttle = Throttle(60.0)
        self.last_error = ""  # the publisher thread's latest error, for the status
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    # ------------------------------------------------------------------ for subclasses

    def address(self, camera: str, stream: str, label: str = "") -> str:
        """Where ``stream`` (events, state, snapshot, results) of ``camera`` goes."""
        raise NotImplementedError

    def service(self) -> None:
        """In the publisher thread, every 50 ms or sooner: (re)connect if it is
        time, publish what :attr:`spool` holds, call :meth:`acked`."""
        raise NotImplementedError

    def shutdown(self) -> None:
        """In :meth:`close`, after the publisher thread stopped: say goodbye."""

    def new_camera(self, camera: str) -> None:
        """``camera`` was seen for the first time."""

    def acked(self, seq: int) -> None:
        self.spool.ack(seq)
        self.counts["acked"] += 1

    def refused(self, seq: int, message: Message, exc: BaseException) -> None:
        """The client library would not take ``message`` at all (a topic,
        routing key or header it refuses, whatever it says): sending it again
        cannot help, and keeping it would hold back everything spooled after
        it. It is let go, counted as ``refused`` and logged (the first time,
        then at most once a minute with how many more)."""
        self.spool.ack(seq)
        self.counts["refused"] += 1
        self.warn("refused", "%s: dropped a %s message to %r that the client library "
                  "refuses: %s", self.name, message.stream, one_line(message.address, 120),
                  one_line("{}: {}".format(type(exc).__name__, exc), 200))

    def warn(self, key: str, text: str, *args: Any) -> None:
        """A warning that may recur every turn: logged at most once a minute."""
        unsaid = self.throttle.due(key)
        if unsaid is not None:
            log.warning(text + (" (and %d more like it in the last minute)" if unsaid else ""),
                        *(args + ((unsaid,) if unsaid else ())))

    def spooled(self, after: int, limit: int) -> List[Tuple[int, Message]]:
        """Up to ``limit`` spooled messages after spool seq ``after``, oldest
        first. A record this version cannot read (written by another) is
        counted as ``unreadable`` and let go, so it cannot block the rest."""
        out = []
        for record in self.spool.pending(after=after, limit=limit):
            try:
                out.append((record.seq, Message.unpack(record.payload)))
            except (ValueError, KeyError, TypeError, AttributeError):
                self.counts["unreadable"] += 1
                self.spool.ack(record.seq)
        return out

    # ------------------------------------------------------------------ the publisher thread

    def _run(self) -> None:
        """Each step is guarded on its own: no error of one message, of the
        disk or of the client library ends publishing for the collector's life
        (it is counted, logged at most once a minute and shown in the status)."""
        while not self._stop.is_set():
            try:
                item = self.queue.get(timeout=0.05)
            except queue.Empty:
                item = None
            while item is not None:
                self._guarded("spooling", self._spool, *item)
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    item = None
            if not self._guarded("publishing", self.service):
                self._stop.wait(1.0)
            self._guarded("spool upkeep", self.spool.tick)

    def _guarded(self, what: str, step: Any, *args: Any) -> bool:
        try:
            step(*args)
            return True
        except Exception as exc:  # pylint: disable=broad-except
            self.counts["errors"] += 1
            self.last_error = one_line("{} failed: {}: {}".format(what, type(exc).__name__, exc))
            unsaid = self.throttle.due(what)
            if unsaid is not None:
                log.error("%s: %s%s", self.name, self.last_error,
                          " (%d more in the last minute)" % unsaid if unsaid else "",
                          exc_info=log.isEnabledFor(logging.DEBUG) or not unsaid)
            return False

    def _spool(self, stream: str, address: str, payload: Any, retain: bool,
               headers: Dict[str, Any]) -> None:
        if not isinstance(payload, bytes):  # a snapshot's image, encoded here, off the pipeline
            payload = jpeg_under(payload, self.snapshot_bytes)
            if payload is None:
                self.counts["snapshot_too_big"] += 1
                return
        try:
            self.spool.append(KIND[stream],
                              Message(stream, address, payload, retain, headers).pack())
        except SpoolError as exc:  # full of more precious records: counted by the spool
            self.counts["spool_full"] += 1
            self.warn("spool_full", "%s: a %s message was not kept: %s", self.name, stream, exc)
        dropped = self.spool.dropped.as_dict()
        if sum(dropped.values()) != self.spool_drops:
            self.spool_drops = sum(dropped.values())
            self.warn("spool_drop", "%s: the spool is full (%d MiB, collector.spool.max_mb): "
                      "older messages given up so far, by kind: %s", self.name,
                      self.spool.max_bytes >> 20, json.dumps(dropped, sort_keys=True))

    # ------------------------------------------------------------------ the collector's side

    def _offer(self, camera: str, stream: str, doc: Any, retain: bool = False,
               label: str = "", headers: Optional[Dict[str, Any]] = None) -> None:
        payload = doc if stream == "snapshot" else \
            json.dumps(doc, separators=(",", ":")).encode()
        try:
            self.queue.put_nowait((stream, self.address(camera, stream, label), payload,
                                   retain, headers or {}))
            self.counts["queued"] += 1
        except queue.Full:  # the disk is stuck: counted, the pipeline goes on
            self.counts["dropped_queue"] += 1

    def emit(self, camera: str, entry: Entry, latency_ms: Optional[float]) -> None:
        cam = self.cameras.get(camera)
        if cam is None:
            cam = self.cameras[camera] = _CameraState()
            if camera not in self.known:  # a camera udev named that the config does not
                self.known.append(camera)
            self.new_camera(camera)
        if entry.late:  # already counted missing: events follow the in-order stream
            return
        if self.results:
            self._offer(camera, "results", dict(frame_record(camera, entry, latency_ms),
                                                v=VERSION))
        if entry.status == OK and entry.message is not None:
            head = entry.message.header
            for event in self.tracker.feed(camera, head.seq, head.capture_ns,
                                           entry.message.meta):
                name_clip(event, self.clip_cameras.get(camera), self.tracker)
                self._offer(camera, "events", event)
                if event["type"] != "end" and event["best_seq"] == head.seq:
                    self._snapshot(camera, entry, event)
            cam.last_seq, cam.last_ns = head.seq, head.capture_ns
            areas = entry.message.meta.get("areas")  # the collector's own (analytics.scene)
            for found in areas if isinstance(areas, list) else []:
                event = scene_event(camera, head.seq, head.capture_ns, found)
                name_clip(event, self.clip_cameras.get(camera), self.tracker)
                self._offer(camera, "events", event)
                if found.get("best") is True:  # an object's best picture so far
                    self._snapshot(camera, entry, event)
        now = time.monotonic()
        if self.state_period and now - cam.last_sent >= self.state_period:
            cam.last_sent = now
            self._offer(camera, "state", self._state(camera), retain=True)

    def _snapshot(self, camera: str, entry: Entry, event: Dict[str, Any]) -> None:
        payload = entry.message.payload
        if not self.snapshot_bytes or payload is None or not len(payload):
            return
        self._offer(camera, "snapshot", picture(entry.message).copy(), retain=True,
                    label=event["label"],
                    headers=dict({"v": VERSION, "event_id": event["id"], "camera": camera,
                                  "label": event["label"], "seq": event["seq"],
                                  "capture_ns": event["capture_ns"]},
                                 **({"track": event["track"]} if "track" in event else {})))

    def _state(self, camera: str) -> Dict[str, Any]:
        """The state message: the collector's own figures for the camera (the
        ones /metrics and `vidpipe status` show), not a count of our own."""
        active = sorted(label for label, st in self.tracker.cameras.get(camera, {}).items()
                        if st.active is not None)
        fig = self.figures(camera)
        dropped = fig.get("dropped", {})
        return {"v": VERSION, "camera": camera, "time": round(time.time(), 3),
                "fps": fig.get("fps", 0.0),
                "latency_p50_ms": fig.get("latency_p50_ms"),
                "latency_p99_ms": fig.get("latency_p99_ms"),
                "processed": fig.get("frames", 0),
                "dropped": sum(dropped.values()) if isinstance(dropped, dict) else 0,
                "missing": fig.get("missing", 0), "active": active,
                **self._area_state(camera, fig.get("areas") or {})}

    def _area_state(self, camera: str, counted: Dict[str, Any]) -> Dict[str, Any]:
        """Zone occupancy and line crossings for the state message (what the
        Home Assistant sensors read), every configured zone and line present:
        the collector's counts (analytics.areas), all classes together."""
        zones, lines = self.areas.get(camera, ((), ()))
        if not zones and not lines:
            return {}
        occupied = {z: sum((counted.get("zones", {}).get(z) or {}).get("occupancy", {}).values())
                    for z in zones}
        crossed = {n: {d: sum(((counted.get("lines", {}).get(n) or {}).get(d) or {}).values())
                       for d in ("in", "out")} for n in lines}
        return {"zones": occupied, "lines": crossed}

    def end_of_stream(self, camera: str) -> None:
        for event in self.tracker.end_all(camera):
            name_clip(event, self.clip_cameras.get(camera), self.tracker)
            self._offer(camera, "events", event)

    def scene_ended(self, camera: str, found: List[Dict[str, Any]]) -> None:
        cam = self.cameras.get(camera) or _CameraState()
        for one in found:
            event = scene_event(camera, cam.last_seq, cam.last_ns, one)
            name_clip(event, self.clip_cameras.get(camera), self.tracker)
            self._offer(camera, "events", event)

    def forget(self, camera: str) -> None:
        """Its open events end (published as at the end of a stream); its
        counters, tracker state and place in the discovery list go."""
        self.end_of_stream(camera)
        self.cameras.pop(camera, None)
        self.tracker.cameras.pop(camera, None)
        if camera not in self.configured and camera in self.known:
            self.known.remove(camera)

    def status(self) -> Dict[str, Any]:
        """For the status board, STATUS and /metrics."""
        extra = {"error": self.last_error} if self.last_error else {}
        return dict(self.spool.stats(), broker=one_line(self.state), **extra,
                    **self.counts.as_dict())

    def close(self, drain_s: float = 2.0) -> None:
        """Spool what is queued; give the broker ``drain_s`` to take what is
        spooled; stop. What is left stays spooled for next time."""
        deadline = time.monotonic() + drain_s
        while (not self.queue.empty() or (self.connected and self.spool.stats()["depth"])) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        if self.thread.is_alive():
            # a connect attempt takes at most 3 s; the unit's TimeoutStopSec is 5
            self.thread.join(3.5)
        while True:  # what the thread did not get to (the spool is thread-safe)
            try:
                self._spool(*self.queue.get_nowait())
            except queue.Empty:
                break
        self.shutdown()
        self.spool.close()
