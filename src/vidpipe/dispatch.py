"""Which handler gets the next frame: the decoder's bookkeeping of handlers.

Handlers (DEALER sockets) announce themselves with CREDIT messages carrying
their window (how many frames they take at once); every finished frame
returns one credit. A handler is free when it holds fewer frames than its
window. A handler that has not been heard from for ``timeout`` seconds is
presumed dead and its frames in flight are handed back to the caller.
This module has no sockets: the decoder feeds it events.
"""

import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

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

    def choose(self) -> Optional[Peer]:
        """The handler to send the next frame to, or ``None`` (no capacity)."""
        if self.mode == "by-camera":
            peer = self.peers.get(self.sticky) if self.sticky is not None else None
            if peer is None:
                peer = self._new_sticky()
            return peer if peer is not None and peer.free > 0 else None
        best = None
        for peer in self.peers.values():
            if peer.free <= 0:
                continue
            if best is None or (peer.free, -peer.last_used) > (best.free, -best.last_used):
                best = peer
        return best

    def _new_sticky(self) -> Optional[Peer]:
        if not self.peers:
            return None
        # spread cameras over handlers deterministically by name
        ordered = sorted(self.peers.values(), key=lambda p: (p.name, p.identity))
        peer = ordered[zlib.crc32(self.camera.encode()) % len(ordered)]
        self.sticky = peer.identity
        return peer

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
