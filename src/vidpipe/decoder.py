"""The decoder role: one per camera.

Reads frames from the source, numbers and timestamps them and hands each to
a handler that has capacity, without ever blocking: a frame no handler can
take is dropped and counted, and the collector is told (a DROP notice), so
every frame read ends up processed or accounted for. A finite source ends
with an EOS notice carrying the totals.
"""

import logging
import secrets
import time
from typing import Any, Dict, List, Optional

import zmq

from vidpipe import names, naming, security, transport, wire
from vidpipe.config import CameraConfig, Config, ConfigError
from vidpipe.dispatch import Balancer, Peer
from vidpipe.framing import Framer
from vidpipe.board import Board
from vidpipe.tap import TapPublisher
from vidpipe.service import Notifier, Reporter, Stopper
from vidpipe.sources import Source, SourceError, make_source
from vidpipe.stats import RateMeter, Tally, often

log = logging.getLogger("vidpipe.decoder")
POLL_SLICE = 0.05  # seconds: the longest the loop sleeps before looking at signals
OVERDUE_S = 60.0  # a frame held longer than this is given up and its slot reclaimed


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


class Decoder:
    def __init__(self, config: Config, name: str, notifier: Optional[Notifier] = None,
                 stopper: Optional[Stopper] = None, source: Optional[Source] = None) -> None:
        self.config = config
        self.cam = camera_config(config, name)
        self.name = name
        self.source = source or make_source(self.cam, config.path)
        self.notifier = notifier or Notifier({})
        self.stopper = stopper or Stopper()
        pipe = config.pipeline
        self.mode = pipe.dispatch
        self.max_latency = pipe.max_latency_ms / 1000.0
        self.stream = secrets.randbits(63) or 1
        self.balancer = Balancer(self.mode, name, pipe.handler_timeout_ms / 1000.0)
        self.framer = Framer(self.cam, self.mode, pipe.runtime_dir, self.stream)
        self.read = 0
        self.sent = 0
        self.dropped = Tally()
        self.bad = Tally()
        self.notice_failures = 0
        self.redispatched = 0
        self.last_drop: Dict[str, float] = {}
        self.rate = RateMeter()
        self.source_open = False
        self.source_error = ""
        self.next_open = 0.0
        self.open_failures = 0
        self.ready_sent = False
        self.started = False
        self.ended = False
        self.reporter = Reporter(self.notifier, pipe.stats_interval_s,
                                 lambda now: self.status_text(),
                                 board=Board(pipe.runtime_dir, "decoder", name),
                                 snapshot=self.snapshot)

        curve = security.make(config.security, config.path, "decoder " + name)
        self.sockets = transport.Sockets(pipe.max_frame_bytes, curve)
        if self.mode == "round-robin":
            self.out = self.sockets.make(zmq.PUSH, sndhwm=1, receives=False)
        else:
            self.out = self.sockets.make(zmq.ROUTER, sndhwm=64, rcvhwm=1000,
                                         max_part=transport.CONTROL_PART)
            self.out.setsockopt(zmq.ROUTER_MANDATORY, 1)
            # ZMTP heartbeats run in libzmq's I/O thread: a handler busy in a slow
            # stage still answers, a dead host's connection is dropped
            self.out.setsockopt(zmq.HEARTBEAT_IVL, pipe.heartbeat_ms)
            self.out.setsockopt(zmq.HEARTBEAT_TIMEOUT, pipe.handler_timeout_ms)
        self.tap = TapPublisher(self.sockets, self.cam.tap, pipe.tap_hwm) if pipe.taps \
            else None
        self.notices = self.sockets.make(zmq.PUSH, sndhwm=10000, receives=False,
                                         immediate=True)
        self.poller = zmq.Poller()
        self.monitor = None
        if self.mode != "round-robin":
            self.poller.register(self.out, zmq.POLLIN)
            self.monitor = self.out.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            self.poller.register(self.monitor, zmq.POLLIN)

    # ------------------------------------------------------------------ setup

    def start(self) -> None:
        self.sockets.bind(self.out, self.cam.bind)
        self.sockets.connect(self.notices, self.config.collector.connect)
        if self.tap is not None:
            self.tap.bind()
        log.info("%s: %s, dispatch %s, frames on %s, %s", self.name, self.source.describe(),
                 self.mode, self.cam.bind, self.framer.describe())
        self._try_open(time.monotonic())

    def _try_open(self, now: float) -> None:
        try:
            self.source.open()
        except SourceError as exc:
            self.open_failures += 1
            delay = min(self.cam.reconnect_max_s, 0.5 * 2 ** min(self.open_failures - 1, 10))
            self.next_open = now + delay
            if str(exc) != self.source_error:
                log.warning("%s: %s; retrying (back-off up to %gs)", self.name, exc,
                            self.cam.reconnect_max_s)
            self.source_error = str(exc)
        else:
            if self.open_failures:
                log.info("%s: %s is back", self.name, self.source.describe())
            self.source_open = True
            self.open_failures = 0
            self.source_error = ""
        if not self.ready_sent:
            # Ready once sockets are bound and the source was tried: a camera that
            # is not there yet is a state to report, not a failed start.
            self.ready_sent = True
            self.reporter.ready()

    # ------------------------------------------------------------------ main loop

    def run(self) -> int:
        self.start()
        pace = self.source.pace_fps if not self.source.live else 0.0
        period = 1.0 / pace if pace > 0 else 0.0
        due = time.monotonic()
        try:
            while not self.stopper.requested:
                now = time.monotonic()
                self.notifier.watchdog(now)
                self._housekeeping(now)
                if not self.source_open:
                    if now >= self.next_open:
                        self._try_open(now)
                    else:
                        self.service(min(POLL_SLICE, self.next_open - now))
                    continue
                if not self.started:
                    if not self._may_start():
                        self.service(POLL_SLICE)
                        continue
                    due = now
                if period:
                    if now < due:
                        self.service(min(POLL_SLICE, due - now))
                        continue
                    # keep the schedule; when late by a frame or more, start it
                    # afresh instead of bursting to catch up
                    due = due + period if now - due < period else now + period
                if not self._step():
                    break
            return self.finish()
        finally:
            self.close()

    def _may_start(self) -> bool:
        wanted = self.cam.wait_for_handlers
        if self.source.live or not wanted or self.mode == "round-robin":
            self.started = True
        elif len(self.balancer) >= wanted:
            log.info("%s: %d handler(s) connected, starting", self.name, len(self.balancer))
            self.started = True
        return self.started

    def _step(self) -> bool:
        """Read and dispatch one frame; ``False`` at the end of the source."""
        try:
            image, slot = self.framer.read(self.source)
        except SourceError as exc:
            self.source.close()
            self.source_open = False
            self.open_failures = 1
            self.source_error = str(exc)
            self.next_open = time.monotonic() + 0.5
            log.warning("%s: %s; reopening", self.name, exc)
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
        self.service(0)
        if self.framer.shm and slot is None:
            self.drop(seq, capture_ns, "no_slot")  # every slot still held by handlers
            self._tap(image, seq, capture_ns)
            return True
        parts = self.framer.parts(image, slot, seq, capture_ns, self.name)
        if self.dispatch(seq, capture_ns, parts):
            self.framer.sent(seq, slot)
        else:
            self.framer.unsent(slot)
        self._tap(image, seq, capture_ns)
        return True

    def _tap(self, image: Any, seq: int, capture_ns: int) -> None:
        """Every frame read goes to the taps (after dispatch: no latency added)."""
        if self.tap is not None and self.tap.wanted(self.name):
            self.tap.publish(self.name, wire.frame_parts(image, self.name, self.stream, seq,
                                                         capture_ns))

    # ------------------------------------------------------------------ dispatch

    def dispatch(self, seq: int, capture_ns: int, parts: List[Any], again: bool = False) -> bool:
        """Send a frame to a handler with capacity, or drop and report it.

        ``again`` marks a re-dispatch: the frame is not counted as sent twice."""
        now = time.monotonic()
        if self.mode == "round-robin":
            if transport.send_nowait(self.out, parts):
                self.sent += 1
                return True
            self.drop(seq, capture_ns, "no_capacity")
            return False
        while True:
            peer = self.balancer.choose()
            if peer is None:
                self.drop(seq, capture_ns, "no_handler" if not len(self.balancer)
                          else "no_capacity")
                return False
            if transport.send_nowait(self.out, [peer.identity] + parts):
                self.balancer.sent(peer, seq, parts, now)
                if again:
                    self.redispatched += 1
                else:
                    self.sent += 1
                return True
            # the handler vanished under us (ROUTER_MANDATORY) or its pipe is full
            self._lose_peer(peer, "unreachable")

    def drop(self, seq: int, capture_ns: int, reason: str) -> None:
        self.framer.release(seq)
        self.dropped[reason] += 1
        self.last_drop[reason] = time.monotonic()
        self.notify_collector(wire.control_parts(wire.DROP, {"reason": reason}, self.name,
                                                 self.stream, seq, capture_ns))

    def notify_collector(self, parts: List[Any]) -> None:
        if not transport.send_nowait(self.notices, parts):
            self.notice_failures += 1

    def _lose_peer(self, peer: Peer, why: str) -> None:
        frames = self.balancer.remove(peer.identity)
        log.warning("%s: handler %s %s; %d frame(s) in flight", self.name, peer.name, why,
                    len(frames))
        self._redispatch(frames)

    def _redispatch(self, frames: List[Any]) -> None:
        """Frames of a lost handler go to another one while still fresh."""
        now_ns = time.time_ns()
        for seq, _sent, parts in frames:
            capture_ns = wire.parse_header(parts[0]).capture_ns
            if (now_ns - capture_ns) / 1e9 <= self.max_latency:
                # on failure dispatch() has counted and reported it as dropped
                self.dispatch(seq, capture_ns, parts, again=True)
            else:
                self.drop(seq, capture_ns, "handler_lost")

    # ------------------------------------------------------------------ handler messages

    def service(self, timeout: float) -> None:
        """Handle handler messages, waiting up to ``timeout`` seconds for the first."""
        if self.mode == "round-robin":
            if timeout > 0:
                time.sleep(timeout)
            return
        events = transport.poll(self.poller, timeout)
        if self.monitor is not None and self.monitor in events:
            self._disconnects()
        if self.out not in events:
            return
        now = time.monotonic()
        for _ in range(1000):
            got = transport.recv_message(self.out, self.bad, self.sockets.max_bytes,
                                         routed=True)
            if got is None:
                if not self.out.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    break
                continue
            identity, fd, msg = got
            try:
                self._on_message(identity, msg, now)
            except Exception as exc:  # one message costs that message, never the decoder
                count = self.bad.add("internal_error")
                if often(count):
                    log.exception("%s: handler message lost (%d so far): %s", self.name,
                                  count, exc)
            peer = self.balancer.peers.get(identity)
            if peer is not None:
                peer.fd = fd

    def _disconnects(self) -> None:
        """A handler's connection dropped (process gone, or host unreachable)."""
        from zmq.utils.monitor import recv_monitor_message

        while self.monitor is not None and self.monitor.poll(0):
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except (zmq.Again, ValueError):
                break
            fd = int(event.get("value", -1))
            lost = self.balancer.on_fd(fd)
            if not lost:
                log.debug("%s: connection fd %d closed (no handler on it)", self.name, fd)
            for peer in lost:
                self._lose_peer(peer, "disconnected")

    def _on_message(self, identity: bytes, msg: wire.Message, now: float) -> None:
        kind = msg.header.kind
        name = msg.meta.get("handler")
        name = name if names.valid(name) else "?"  # it is logged and shown
        if kind == wire.CREDIT:
            window = msg.meta.get("window", 1)
            if not isinstance(window, int) or isinstance(window, bool) or not 0 < window <= 64:
                self.bad["bad_credit"] += 1
                return
            known = identity in self.balancer.peers
            self.balancer.heard(identity, name, window, now)
            if not known:
                log.info("%s: handler %s joined (window %d)", self.name, name, window)
            if msg.header.seq != wire.NO_SEQ and msg.header.stream == self.stream:
                if self.balancer.done(identity, msg.header.seq):
                    self.framer.release(msg.header.seq)
        elif kind == wire.BYE:
            peer = self.balancer.peers.get(identity)
            if peer is not None:
                self._lose_peer(peer, "left")
        else:
            self.bad["unexpected_kind"] += 1

    def _housekeeping(self, now: float) -> None:
        for peer in self.balancer.expired(now):
            self._lose_peer(peer, "went silent (presumed dead)")
        # a safety net: a frame held this long by a connected handler is given up
        # (a stuck stage gets its handler restarted by the watchdog long before)
        limit = OVERDUE_S
        for peer, seq in self.balancer.overdue(now, limit):
            _sent, parts = peer.inflight.pop(seq)
            self.drop(seq, wire.parse_header(parts[0]).capture_ns, "handler_timeout")
        self.reporter.tick(now)

    # ------------------------------------------------------------------ status and end

    def why_idle(self) -> str:
        """Why frames are not flowing right now, in words for ``systemctl status``."""
        recent = time.monotonic() - 5.0
        if not self.source_open:
            return "waiting for source: {}".format(self.source_error or "not opened yet")
        if self.mode != "round-robin" and not len(self.balancer):
            return "no handler connected"
        if self.last_drop.get("no_capacity", 0) > recent:
            return "handlers at capacity"
        if self.notice_failures:
            return "collector unreachable"
        return ""

    def status_text(self) -> str:
        text = "{}: {:.1f} fps, read {}, sent {}, dropped {}, handlers {}".format(
            self.name, self.rate.rate(), self.read, self.sent, self.dropped.text(),
            len(self.balancer) if self.mode != "round-robin" else "?")
        if self.redispatched:
            text += ", re-sent {}".format(self.redispatched)
        if self.bad:
            text += ", malformed {}".format(self.bad.text())
        why = self.why_idle()
        return text + (" - " + why if why else "")

    def snapshot(self, now: float) -> Dict[str, Any]:
        """The numbers ``vidpipe status`` and ``/metrics`` show for this camera."""
        return {"cameras": {self.name: {"frames": self.read, "sent": self.sent,
                                        "dropped": self.dropped.as_dict(),
                                        "fps": round(self.rate.rate(), 2)}},
                "source": self.source.describe(), "source_open": self.source_open,
                "handlers": len(self.balancer) if self.mode != "round-robin" else None,
                "queue_depth": self.balancer.in_flight(), "resent": self.redispatched,
                "malformed": self.bad.as_dict(), "why_idle": self.why_idle(),
                "tapped": bool(self.tap is not None and self.tap.wanted(self.name))}

    def finish(self) -> int:
        """Drain frames in flight, then tell the collector the totals."""
        self.notifier.stopping()
        log.info("%s", self.status_text())
        deadline = time.monotonic() + (self.max_latency + self.balancer.timeout
                                       if self.ended else 1.0)
        while self.balancer.in_flight() and time.monotonic() < deadline:
            self.service(POLL_SLICE)
        for identity in list(self.balancer.peers):
            for seq, _sent, parts in self.balancer.remove(identity):
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

    def close(self) -> None:
        self.reporter.publish(time.monotonic(), "stopped")
        self.source.close()
        if self.monitor is not None:
            self.out.disable_monitor()
            self.monitor.close(linger=0)
        self.sockets.close()
        self.framer.close()
