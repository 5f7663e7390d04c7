"""How a decoder hands frames to handlers: the dispatch strategies.

``pipeline.dispatch`` picks one (:func:`make_dispatcher`); the decoder only
talks to the object, never to the mode's name:

* ``round-robin`` (:class:`PushDispatcher`): a PUSH socket; libzmq spreads
  frames over connected handlers; nothing is known of them or acknowledged.
* ``balanced`` and ``by-camera`` (:class:`CreditDispatcher`): a ROUTER
  socket. Handlers (DEALER sockets) announce themselves with CREDIT messages
  carrying their window (how many frames they take at once); every finished
  frame returns one credit. A handler is free when it holds fewer frames
  than its window; ``balanced`` picks the freest, ``by-camera`` keeps one
  handler per camera, spread by how many cameras each handler serves. A
  handler that left, whose connection dropped, or that has not been heard
  from for ``handler_timeout_ms`` hands its frames in flight back to the
  decoder (:meth:`Owner.frames_lost`).

:class:`Balancer` is the credit bookkeeping, with no sockets.
"""

import logging
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple

import zmq

from vidpipe import names
from vidpipe.link import wire
from vidpipe.link.sockets import CONTROL_PART, Sockets, poll, send_nowait
from vidpipe.config import PipelineConfig
from vidpipe.stats import Tally

log = logging.getLogger("vidpipe.decoder")
#: a frame held longer than this by a live handler is given up (a stuck stage
#: gets its handler restarted by the watchdog long before)
OVERDUE_S = 60.0
#: by-camera: a camera stays this long where it was put before it may move
#: (the handlers' credits, a heartbeat apart, say where the others went)
SETTLE_S = 5.0
#: (seq, sent at, message parts) of a frame a handler held
Held = Tuple[int, float, Any]

# seq -> (sent at, monotonic seconds; the message parts, kept for re-dispatch)
InFlight = "OrderedDict[int, Tuple[float, Any]]"


@dataclass
class Peer:
    identity: bytes
    name: str = "?"
    window: int = 1
    last_seen: float = 0.0
    last_used: float = float("-inf")  # never used wins a tie
    fd: int = -1  # the connection its messages arrive on
    inflight: "OrderedDict[int, Tuple[float, Any]]" = field(default_factory=OrderedDict)
    serving: FrozenSet[str] = frozenset()  # the cameras it says it serves now

    @property
    def free(self) -> int:
        return self.window - len(self.inflight)


class Balancer:
    """Credit-based choice of a handler, ``balanced`` or ``by-camera``."""

    def __init__(self, mode: str, camera: str, timeout: float) -> None:
        self.mode = mode
        self.camera = camera
        self.timeout = timeout
        self.peers: Dict[bytes, Peer] = {}
        self.sticky: Optional[bytes] = None
        self.settled_at = float("-inf")  # by-camera: when the handler was last chosen
        self.looked_at = float("-inf")  # and last looked at again

    def __len__(self) -> int:
        return len(self.peers)

    def heard(self, identity: bytes, name: str, window: int, now: float) -> Peer:
        peer = self.peers.get(identity)
        if peer is None:
            peer = self.peers[identity] = Peer(identity=identity)
        peer.name = name
        peer.window = max(1, window)
        peer.last_seen = now
        return peer

    def done(self, identity: bytes, seq: int) -> bool:
        """A handler finished ``seq``; ``False`` if it was not in flight there."""
        peer = self.peers.get(identity)
        return peer is not None and peer.inflight.pop(seq, None) is not None

    def choose(self, now: Optional[float] = None) -> Optional[Peer]:
        """The handler to send the next frame to, or ``None`` (no capacity)."""
        if self.mode == "by-camera":
            peer = self._by_camera(time.monotonic() if now is None else now)
            return peer if peer is not None and peer.free > 0 else None
        best = None
        for peer in self.peers.values():
            if peer.free <= 0:
                continue
            if best is None or (peer.free, -peer.last_used) > (best.free, -best.last_used):
                best = peer
        return best

    # ------------------------------------------------------------------ by-camera

    def load(self, peer: Peer) -> int:
        """How many cameras ``peer`` serves, counting this one where it goes now."""
        others = len(peer.serving - {self.camera})
        return others + (1 if peer.identity == self.sticky else 0)

    def _by_camera(self, now: float) -> Optional[Peer]:
        """This camera's handler: kept while it is there; else the one serving
        the fewest cameras (as the handlers' credits say). So k cameras on n
        handlers come to at most ceil(k/n) each, whatever their names. A
        handler that joins late is filled by the camera named last on the
        busiest handler moving over -- one camera a handler at a time, only
        while the two differ by two or more, and not within SETTLE_S of a
        choice, so that the handlers' reports have caught up."""
        peer = self.peers.get(self.sticky) if self.sticky is not None else None
        if peer is None:
            self.sticky = None
            peer = self._least_loaded()
            if peer is not None:
                self.sticky, self.settled_at = peer.identity, now
            return peer
        if now - self.settled_at >= SETTLE_S and now - self.looked_at >= 1.0:
            self.looked_at = now
            target = self._least_loaded()
            mine = peer.serving | {self.camera}
            if target is not None and target is not peer and \
                    self.load(peer) - self.load(target) >= 2 and self.camera == max(mine):
                log.info("%s: moves from handler %s (%d cameras) to handler %s (%d)",
                         self.camera, peer.name, self.load(peer), target.name,
                         self.load(target))
                self.sticky, self.settled_at, peer = target.identity, now, target
        return peer

    def _least_loaded(self) -> Optional[Peer]:
        # ties: a hash of camera and handler (rendezvous), so decoders that
        # choose at the same moment spread instead of piling on one handler
        return min(self.peers.values(), default=None, key=lambda p: (
            self.load(p), zlib.crc32("{}/{}".format(self.camera, p.name).encode())))

    def sent(self, peer: Peer, seq: int, parts: Any, now: float) -> None:
        peer.inflight[seq] = (now, parts)
        peer.last_used = now

    def remove(self, identity: bytes) -> List[Tuple[int, float, Any]]:
        """Forget a handler; returns its frames in flight as (seq, sent_at, parts)."""
        peer = self.peers.pop(identity, None)
        if self.sticky == identity:
            self.sticky = None
        if peer is None:
            return []
        return [(seq, sent, parts) for seq, (sent, parts) in peer.inflight.items()]

    def expired(self, now: float) -> List[Peer]:
        """Idle handlers not heard from for ``timeout``. A handler holding frames is
        busy, not gone: a slow stage must not get it presumed dead (its loss is
        seen as its connection dropping, see ``on_fd``)."""
        return [peer for peer in self.peers.values()
                if not peer.inflight and now - peer.last_seen > self.timeout]

    def on_fd(self, fd: int) -> List[Peer]:
        """The handlers whose connection ``fd`` just dropped."""
        return [peer for peer in self.peers.values() if fd >= 0 and peer.fd == fd]

    def overdue(self, now: float, limit: float) -> List[Tuple[Peer, int]]:
        """Frames a live handler has held longer than ``limit`` seconds."""
        out = []
        for peer in self.peers.values():
            for seq, (sent, _parts) in peer.inflight.items():
                if now - sent > limit:
                    out.append((peer, seq))
        return out

    def in_flight(self) -> int:
        return sum(len(peer.inflight) for peer in self.peers.values())


class Owner:
    """What a dispatcher needs from its decoder (the decoder is one)."""

    label: str
    bad: Tally
    stream: int  # this run's stream id: credits for frames of another run are ignored

    def drain(self, sock: zmq.Socket, handle: Callable[[Any], None],
              routed: bool = False) -> int:
        raise NotImplementedError

    def frame_done(self, seq: int) -> None:
        """A handler finished ``seq``: its shared-memory slot is free again."""
        raise NotImplementedError

    def frames_lost(self, frames: List[Held]) -> None:
        """Frames a lost handler held: send them again while fresh, else drop."""
        raise NotImplementedError

    def drop(self, seq: int, capture_ns: int, reason: str) -> None:
        raise NotImplementedError


class PushDispatcher:
    """``round-robin``: PUSH to whoever is connected; nothing comes back."""

    credits = False

    def __init__(self, owner: Owner, sockets: Sockets, pipe: PipelineConfig,
                 camera: str) -> None:
        self.owner = owner
        self.sockets = sockets
        self.out = sockets.make(zmq.PUSH, sndhwm=1, receives=False)

    def bind(self, endpoint: str) -> None:
        self.sockets.bind(self.out, endpoint)

    def handlers(self) -> Optional[int]:
        """How many handlers are connected (``None``: not known)."""
        return None

    def enough(self, wanted: int) -> bool:
        """Whether ``wanted`` handlers are there to start a finite source for."""
        return True

    def send(self, seq: int, parts: List[Any], now: float) -> str:
        """Hand a frame out; ``""`` when sent, else why not (a drop reason)."""
        return "" if send_nowait(self.out, parts) else "no_capacity"

    def wait(self, timeout: float) -> None:
        """Handle what handlers sent, waiting up to ``timeout`` for the first."""
        if timeout > 0:
            time.sleep(timeout)

    def housekeeping(self, now: float) -> None:
        """Notice handlers gone silent and frames held too long."""

    def in_flight(self) -> int:
        return 0

    def forget_all(self) -> List[Held]:
        """At the end: every handler forgotten, the frames they still held."""
        return []

    def close(self) -> None:
        pass


class CreditDispatcher(PushDispatcher):
    """``balanced`` / ``by-camera``: frames go where credits are."""

    credits = True

    def __init__(self, owner: Owner, sockets: Sockets, pipe: PipelineConfig,
                 camera: str) -> None:
        self.owner = owner
        self.sockets = sockets
        self.balancer = Balancer(pipe.dispatch, camera, pipe.handler_timeout_ms / 1000.0)
        self.out = sockets.make(zmq.ROUTER, sndhwm=64, rcvhwm=1000,
                                max_part=CONTROL_PART)
        self.out.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # ZMTP heartbeats run in libzmq's I/O thread: a handler busy in a slow
        # stage still answers, a dead host's connection is dropped
        self.out.setsockopt(zmq.HEARTBEAT_IVL, pipe.heartbeat_ms)
        self.out.setsockopt(zmq.HEARTBEAT_TIMEOUT, pipe.handler_timeout_ms)
        self.poller = zmq.Poller()
        self.poller.register(self.out, zmq.POLLIN)
        self.monitor: Optional[zmq.Socket] = self.out.get_monitor_socket(
            zmq.EVENT_DISCONNECTED)
        self.poller.register(self.monitor, zmq.POLLIN)

    def handlers(self) -> Optional[int]:
        return len(self.balancer)

    def enough(self, wanted: int) -> bool:
        if len(self.balancer) < wanted:
            return False
        log.info("%s: %d handler(s) connected, starting", self.owner.label,
                 len(self.balancer))
        return True

    def send(self, seq: int, parts: List[Any], now: float) -> str:
        while True:
            peer = self.balancer.choose(now)
            if peer is None:
                return "no_handler" if not len(self.balancer) else "no_capacity"
            if send_nowait(self.out, [peer.identity] + parts):
                self.balancer.sent(peer, seq, parts, now)
                return ""
            # the handler vanished under us (ROUTER_MANDATORY) or its pipe is full
            self._lose(peer, "unreachable")

    def wait(self, timeout: float) -> None:
        events = poll(self.poller, timeout)
        if self.monitor is not None and self.monitor in events:
            self._disconnects()
        if self.out in events:
            self.owner.drain(self.out, self._on_routed, routed=True)

    def _on_routed(self, got: Tuple[bytes, int, wire.Message]) -> None:
        identity, fd, msg = got
        try:
            self._on_message(identity, msg, time.monotonic())
        finally:
            peer = self.balancer.peers.get(identity)
            if peer is not None:
                peer.fd = fd

    def _on_message(self, identity: bytes, msg: wire.Message, now: float) -> None:
        kind = msg.header.kind
        name = msg.meta.get("handler")
        name = name if names.valid(name) else "?"  # it is logged and shown
        if kind == wire.CREDIT:
            window = msg.meta.get("window", 1)
            if not isinstance(window, int) or isinstance(window, bool) or not 0 < window <= 64:
                self.owner.bad["bad_credit"] += 1
                return
            known = identity in self.balancer.peers
            peer = self.balancer.heard(identity, name, window, now)
            serving = msg.meta.get("serving", [])
            if isinstance(serving, list) and len(serving) <= 64:
                peer.serving = frozenset(c for c in serving if names.valid(c))
            if not known:
                log.info("%s: handler %s joined (window %d)", self.owner.label, name, window)
            # a credit for a frame of this stream (not of the decoder's earlier run)
            if msg.header.seq != wire.NO_SEQ and msg.header.stream == self.owner.stream:
                if self.balancer.done(identity, msg.header.seq):
                    self.owner.frame_done(msg.header.seq)
        elif kind == wire.BYE:
            peer = self.balancer.peers.get(identity)
            if peer is not None:
                self._lose(peer, "left")
        else:
            self.owner.bad["unexpected_kind"] += 1

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
                log.debug("%s: connection fd %d closed (no handler on it)", self.owner.label,
                          fd)
            for peer in lost:
                self._lose(peer, "disconnected")

    def _lose(self, peer: Peer, why: str) -> None:
        frames = self.balancer.remove(peer.identity)
        log.warning("%s: handler %s %s; %d frame(s) in flight", self.owner.label, peer.name,
                    why, len(frames))
        self.owner.frames_lost(frames)

    def housekeeping(self, now: float) -> None:
        # Heartbeats may be waiting unread, when this loop was held up (a
        # camera's open can block for seconds): hear them before calling anyone
        # dead, or every handler is "lost" after each slow open.
        expired = self.balancer.expired(now)
        for _ in range(32):
            if not expired or not self.owner.drain(self.out, self._on_routed, routed=True):
                break
            now = time.monotonic()
            expired = self.balancer.expired(now)
        for peer in expired:
            self._lose(peer, "went silent (presumed dead)")
        for peer, seq in self.balancer.overdue(now, OVERDUE_S):
            _sent, parts = peer.inflight.pop(seq)
            self.owner.drop(seq, wire.parse_header(parts[0]).capture_ns, "handler_overdue")

    def in_flight(self) -> int:
        return self.balancer.in_flight()

    def forget_all(self) -> List[Held]:
        held: List[Held] = []
        for identity in list(self.balancer.peers):
            held.extend(self.balancer.remove(identity))
        return held

    def close(self) -> None:
        if self.monitor is not None:
            self.out.disable_monitor()
            self.monitor.close(linger=0)
            self.monitor = None


def make_dispatcher(owner: Owner, sockets: Sockets, pipe: PipelineConfig,
                    camera: str) -> PushDispatcher:
    """The strategy ``pipeline.dispatch`` names."""
    kind = PushDispatcher if pipe.dispatch == "round-robin" else CreditDispatcher
    return kind(owner, sockets, pipe, camera)
