"""The decoder role: one per camera.

Reads frames from the source, numbers and timestamps them and hands each to
a handler that has capacity, without falling behind the camera: a frame no
handler can take is dropped and counted, and the collector is told (a DROP
notice), so every frame read ends up processed or accounted for. Only a
frame that came early (a burst buffered upstream) waits for room, until its
time. A finite source ends
with an EOS notice carrying the totals.
"""

import logging
import secrets
import time
from typing import Any, Dict, List, Optional

import zmq

from vidpipe.capture import naming
from vidpipe.link import sockets, wire
from vidpipe.config import CameraConfig, Config, ConfigError
from vidpipe.link.dispatch import Held, make_dispatcher
from vidpipe.link.payload import FrameWriter
from vidpipe.link.payload.frames import FrameRefused
from vidpipe.runtime import Role
from vidpipe.service import Notifier, Stopper
from vidpipe.capture.passthrough import make_recorder
from vidpipe.capture.sources import Source, SourceError, make_source
from vidpipe.stats import RateMeter, Tally
from vidpipe.link.tap import TapPublisher

log = logging.getLogger("vidpipe.decoder")
POLL_SLICE = 0.05  # seconds: the longest the loop sleeps before looking at signals
ROOM_SLICE = 0.005  # a frame waiting for room looks again this often (push has no event)
ROOM_MAX_S = 1.0  # and waits at most this long (slow cameras: the watchdog)
PROBE_S = 1.0  # a network camera that does not answer is looked at this often
REFUSED_S = 20.0  # one that refuses (wrong password, no such path): 3 times a minute
QUICK_S = 5.0  # a source failing this soon after its open, again and again, is backed off


def camera_config(config: Config, name: str) -> CameraConfig:
    """The camera's section, or defaults for a camera udev named but nobody configured."""
    try:
        return config.camera(name)
    except ConfigError:
        device = naming.device_for(name)
        if device is None:
            raise
        log.info("%s: not in %s; using defaults for %s", name, config.path, device)
        return config.unconfigured_camera(name, device)


class Decoder(Role):
    role = "decoder"

    def __init__(self, config: Config, name: str, notifier: Optional[Notifier] = None,
                 stopper: Optional[Stopper] = None, source: Optional[Source] = None) -> None:
        self.cam = camera_config(config, name)
        super().__init__(config, name, notifier, stopper)
        self.source = source or make_source(self.cam, config.path)
        pipe = config.pipeline
        self.max_latency = pipe.max_latency_ms / 1000.0
        self.stream = secrets.randbits(63) or 1
        self.framer = FrameWriter(self.cam, pipe.dispatch, pipe.runtime_dir, self.stream)
        self.read = self.sent = self.redispatched = self.notice_failures = 0
        self.dropped = Tally()
        self.last_drop: Dict[str, float] = {}
        self.rate = RateMeter()
        self.source_open = self.ready_sent = self.started = self.ended = False
        self.source_error = ""
        self.next_open = self.due = 0.0
        self.period = 0.0
        self.handed = 0.0  # when the last frame was handed out or dropped
        self.open_failures = 0
        self.opened_at = 0.0
        self.read_at_open = 0  # frames read before the source's last open
        self.quick_failures = 0  # failures soon after an open, in a row: back-off
        self.last_failure = ""  # what the source failed with last (logged once)
        self.camera_down = False  # a probe found the network camera away
        self.open_unlooked = False  # open without a probe next time
        self.out = make_dispatcher(self, self.sockets, pipe, name)
        self.tap = TapPublisher(self.sockets, self.cam.tap, pipe.tap_hwm) if pipe.taps \
            else None
        self.notices = self.sockets.make(zmq.PUSH, sndhwm=10000, receives=False,
                                         immediate=True)
        # the camera's own stream to disk (record = "passthrough"): its own thread
        self.recorder = make_recorder(self.cam, config.collector, self.sockets)

    # ------------------------------------------------------------------ setup

    def start(self) -> None:
        self.out.bind(self.cam.bind)
        self.sockets.connect(self.notices, self.config.collector.connect)
        if self.tap is not None:
            self.tap.bind()
        log.info("%s: %s, dispatch %s, frames on %s, %s", self.name, self.source.describe(),
                 self.config.pipeline.dispatch, self.cam.bind, self.framer.describe())
        if self.recorder is not None:
            self.recorder.start()
        pace = self.source.pace_fps if not self.source.live else 0.0
        self.period = 1.0 / pace if pace > 0 else 0.0
        self._try_open(time.monotonic())

    def _look(self, now: float) -> bool:
        """A cheap look at a network camera before opening it: while it does
        not answer, look again every PROBE_S (no back-off: frames flow soon
        after it is back); while it refuses (401, 404), every REFUSED_S.
        ``True``: it answered (the next failed open skips the look)."""
        answer = self.source.check()
        if answer is not None and not answer.up:
            self.next_open = now + (REFUSED_S if answer.refused else PROBE_S)
            self.camera_down = True
            raise SourceError("{}: {}".format(self.source.describe(), answer.reason))
        if self.camera_down:  # it answers again: open at once, back-off afresh
            self.camera_down = False
            self.open_failures = 0
        return answer is not None

    def _try_open(self, now: float) -> None:
        """Open the source, after a look at a network camera -- but not after
        a look it answered and an open that failed: a server's shared media
        (GStreamer's RTSP server, as in its test-launch) may answer 503 to the
        DESCRIBE that comes right after a describe-only visit, so the next
        try opens without one."""
        try:
            looked = not self.open_unlooked and self._look(now)
            self.open_unlooked = False
            try:
                self.source.open()
            except SourceError:
                self.open_unlooked = looked
                self.open_failures += 1
                self.next_open = now + min(self.cam.reconnect_max_s,
                                           0.5 * 2 ** min(self.open_failures - 1, 10))
                raise
        except SourceError as exc:
            if self.next_open <= now:  # failed before any schedule (its credentials file)
                self.next_open = now + REFUSED_S
            if str(exc) != self.source_error:
                log.warning("%s: %s; retrying (back-off up to %gs)", self.name, exc,
                            self.cam.reconnect_max_s)
            self.source_error = str(exc)
        else:
            if self.open_failures and not self.quick_failures:
                log.info("%s: %s is back", self.name, self.source.describe())
            self.source_open = True
            self.opened_at = now
            self.read_at_open = self.read
            self.open_failures = 0
            self.source_error = ""
        if not self.ready_sent:
            # Ready once sockets are bound and the source was tried: a camera that
            # is not there yet is a state to report, not a failed start.
            self.ready_sent = True
            self.reporter.ready()

    # ------------------------------------------------------------------ main loop

    def step(self) -> bool:
        """Wait for what is due next (the source, handlers, the frame's time),
        else read and hand out one frame; ``False`` at the end of the source."""
        now = time.monotonic()
        self.notifier.watchdog(now)
        self.out.housekeeping(now)
        self.reporter.tick(now)
        if not self.source_open:
            if now >= self.next_open:
                self._try_open(now)
            else:
                self.out.wait(min(POLL_SLICE, self.next_open - now))
            return True
        if not self.started:
            if not self._may_start():
                if self.source.live:  # a camera cannot pause: its frames until then go
                    self._let_go_one()
                    self.out.wait(0)  # what the handlers sent meanwhile (hello, credit)
                else:
                    self.out.wait(POLL_SLICE)
                return True
            self.due = now
        if self.period:
            if now < self.due:
                self.out.wait(min(POLL_SLICE, self.due - now))
                return True
            # keep the schedule; when late by a frame or more, start it
            # afresh instead of bursting to catch up
            self.due = self.due + self.period if now - self.due < self.period \
                else now + self.period
        return self._read_one()

    def _may_start(self) -> bool:
        """The stream starts (seq 0) once the handlers it asked for
        (``wait_for_handlers``) are there, so that none of it is dropped; a
        live source's frames until then are read and let go, unnumbered."""
        wanted = self.cam.wait_for_handlers
        self.started = not wanted or self.out.enough(wanted)
        return self.started

    def _let_go_one(self) -> None:
        try:
            self.source.skip()
        except SourceError as exc:
            self._source_failed(exc)

    def _source_failed(self, exc: Exception) -> None:
        """Close the source and open it again: at once (0.5 s) after it had
        delivered frames or run a while, backing off to reconnect_max_s while
        it keeps failing within QUICK_S of each open without a frame (a camera
        whose frames are refused). A stream that drops after frames is a
        network hiccup, reopened at once however often it happens."""
        now = time.monotonic()
        self.source.close()
        self.source_open = False
        self.open_failures = 1
        quick = now - self.opened_at < QUICK_S and self.read == self.read_at_open
        self.quick_failures = self.quick_failures + 1 if quick else 0
        delay = min(self.cam.reconnect_max_s, 0.5 * 2 ** min(self.quick_failures, 10))
        self.next_open = now + delay
        if not quick or str(exc) != self.last_failure:  # not again at each try of a back-off
            log.warning("%s: %s; reopening in %.1f s", self.name, exc, delay)
        self.source_error = self.last_failure = str(exc)

    def _read_one(self) -> bool:
        """Read and dispatch one frame; ``False`` at the end of the source."""
        try:
            image, slot = self.framer.read(self.source)
        except (SourceError, FrameRefused) as exc:
            self._source_failed(exc)
            return True
        if image is None:
            log.info("%s: end of %s after %d frames", self.name, self.source.describe(),
                     self.read)
            self.ended = True
            return False
        seq = self.read
        self.read += 1
        capture_ns = time.time_ns()
        self.rate.tick()
        until = self._room_until()
        self.out.wait(0)
        if self.framer.shm and slot is None:
            slot = self._wait_for_slot(image, until)
        if self.framer.shm and slot is None:
            self.drop(seq, capture_ns, "no_slot")  # every slot still held by handlers
        else:
            parts = self.framer.parts(image, slot, seq, capture_ns, self.name)
            if self.dispatch(seq, capture_ns, parts, until=until):
                self.framer.sent(seq, slot)
            else:
                self.framer.unsent(slot)
        self.handed = time.monotonic()
        self._tap(image, seq, capture_ns)
        return True

    def _room_until(self) -> float:
        """Until when a live camera's frame may wait for a handler or a free
        slot: one that comes before its time -- a burst of frames buffered
        upstream, as FFmpeg hands over at start-up -- waits until then (one
        frame interval after the last) instead of being dropped; one on time
        does not wait, so the decoder never falls behind the camera."""
        rate = max(self.cam.fps, float(self.source.info.get("fps") or 0.0))
        if not self.source.live or rate <= 0:
            return 0.0
        return self.handed + min(1.0 / rate, ROOM_MAX_S)

    def _wait_for_slot(self, image: Any, until: float) -> Optional[int]:
        while time.monotonic() < until:
            self.out.wait(min(ROOM_SLICE, until - time.monotonic()))
            slot = self.framer.place(image)
            if slot is not None:
                return slot
        return None

    def _tap(self, image: Any, seq: int, capture_ns: int) -> None:
        """Every frame read goes to the taps (after dispatch: no latency added)."""
        if self.tap is not None and self.tap.wanted(self.name):
            self.tap.publish(self.name, wire.frame_parts(image, self.name, self.stream, seq,
                                                         capture_ns, flags=self.framer.flags))

    # ------------------------------------------------------------------ dispatch

    def dispatch(self, seq: int, capture_ns: int, parts: List[Any], again: bool = False,
                 until: float = 0.0) -> bool:
        """Send a frame to a handler with capacity (waiting for one up to
        ``until``), or drop and report it.

        ``again`` marks a re-dispatch: the frame is not counted as sent twice."""
        why = self.out.send(seq, parts, time.monotonic())
        while why == "no_capacity" and time.monotonic() < until:
            self.out.wait(min(ROOM_SLICE, until - time.monotonic()))
            why = self.out.send(seq, parts, time.monotonic())
        if why:
            self.drop(seq, capture_ns, why)
            return False
        if again:
            self.redispatched += 1
        else:
            self.sent += 1
        return True

    def drop(self, seq: int, capture_ns: int, reason: str) -> None:
        self.framer.release(seq)
        self.dropped[reason] += 1
        self.last_drop[reason] = time.monotonic()
        self.notify_collector(wire.control_parts(wire.DROP, {"reason": reason}, self.name,
                                                 self.stream, seq, capture_ns))

    def notify_collector(self, parts: List[Any]) -> None:
        if not sockets.send_nowait(self.notices, parts):
            self.notice_failures += 1

    def frame_done(self, seq: int) -> None:
        self.framer.release(seq)

    def frames_lost(self, frames: List[Held]) -> None:
        """Frames of a lost handler go to another one while still fresh."""
        now_ns = time.time_ns()
        for seq, _sent, parts in frames:
            capture_ns = wire.parse_header(parts[0]).capture_ns
            if (now_ns - capture_ns) / 1e9 <= self.max_latency:
                # on failure dispatch() has counted and reported it as dropped
                self.dispatch(seq, capture_ns, parts, again=True)
            else:
                self.drop(seq, capture_ns, "handler_lost")

    # ------------------------------------------------------------------ status and end

    def why_idle(self) -> str:
        """Why frames are not flowing right now, in words for ``systemctl status``."""
        recent = time.monotonic() - 5.0
        if not self.source_open:
            return "waiting for source: {}".format(self.source_error or "not opened yet")
        if self.out.handlers() == 0:
            return "no handler connected"
        if self.last_drop.get("no_capacity", 0) > recent:
            return "handlers at capacity"
        if self.notice_failures:
            return "collector unreachable"
        return ""

    def status_text(self, now: Optional[float] = None) -> str:
        handlers = self.out.handlers()
        head = "{}: {:.1f} fps, read {}, sent {}, dropped {}, handlers {}".format(
            self.name, self.rate.rate(), self.read, self.sent, self.dropped.text(),
            "?" if handlers is None else handlers)
        if self.source_open and self.source.info.get("decoder"):  # a network camera's
            head += ", " + self.source.info["decoder"]
        if self.recorder is not None:
            head += ", " + self.recorder.text()
        return self.compose_status(head, [("re-sent", self.redispatched),
                                          ("malformed", self.bad)], self.why_idle())

    def snapshot(self, now: float) -> Dict[str, Any]:
        """The numbers ``vidpipe status`` and ``/metrics`` show for this camera."""
        return {"cameras": {self.name: {"frames": self.read, "sent": self.sent,
                                        "dropped": self.dropped.as_dict(),
                                        "fps": round(self.rate.rate(), 2)}},
                "source": self.source.describe(), "source_open": self.source_open,
                "handlers": self.out.handlers(),
                "queue_depth": self.out.in_flight(), "resent": self.redispatched,
                "malformed": self.bad.as_dict(), "why_idle": self.why_idle(),
                "tapped": bool(self.tap is not None and self.tap.wanted(self.name)),
                "recording": self.recorder.status() if self.recorder is not None else None}

    def finish(self) -> int:
        """Drain frames in flight, then tell the collector the totals."""
        log.info("%s", self.status_text())
        timeout = self.config.pipeline.handler_timeout_ms / 1000.0
        deadline = time.monotonic() + (self.max_latency + timeout if self.ended else 1.0)
        while self.out.in_flight() and time.monotonic() < deadline:
            self.out.wait(POLL_SLICE)
        for seq, _sent, parts in self.out.forget_all():
            self.drop(seq, wire.parse_header(parts[0]).capture_ns, "shutdown")
        totals: Dict[str, Any] = {"read": self.read, "sent": self.sent,
                                  "dropped": self.dropped.as_dict(), "ended": self.ended}
        eos = wire.control_parts(wire.EOS, totals, self.name, self.stream, self.read)
        if self.tap is not None:
            self.tap.publish_end(self.name, eos)
        # the notices still queued, EOS last, get a second to reach the collector
        self.notices.setsockopt(zmq.LINGER, 1000)
        self.notices.setsockopt(zmq.SNDTIMEO, 1000)
        try:
            self.notices.send_multipart(eos)
        except zmq.Again:
            log.warning("%s: collector unreachable; end-of-stream not delivered", self.name)
        return 0

    def release(self) -> None:
        if self.recorder is not None:
            self.recorder.stop()
        self.source.close()
        self.out.close()

    def unmap(self) -> None:
        self.framer.close()
