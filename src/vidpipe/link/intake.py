"""The handler's side of dispatch: its links to the decoders.

With credit-based dispatch (``balanced``, ``by-camera``) a handler holds a
DEALER per decoder: it announces itself with a CREDIT carrying its window,
returns one credit per frame done, repeats the announcement every heartbeat
(so a decoder that restarted learns of it), and says BYE when it stops. With
``round-robin`` it holds a PULL per decoder and says nothing. Decoders come
from the config and from the runtime directory, where a decoder started
later (by udev) appears as ``decoder-NAME.sock``; only sockets of our own
user are joined.
"""

import glob
import logging
import os
import stat
import time
from typing import Any, Dict, Iterator, List, Set, Tuple

import zmq

from vidpipe.link import wire
from vidpipe.link.sockets import Sockets, poll, recv_parts, send_nowait
from vidpipe.config import Config, layout

log = logging.getLogger("vidpipe.handler")
DISCOVERY_INTERVAL = 1.0
SERVING_S = 3.0  # a camera whose frames came this recently is being served
MAX_SERVING = 64


class Serving:
    """The cameras whose frames this handler had in the last SERVING_S (at
    most MAX_SERVING names), the list remade at most twice a second."""

    def __init__(self) -> None:
        self.last: Dict[str, float] = {}
        self.listed: List[str] = []
        self.listed_at = float("-inf")

    def note(self, camera: str, now: float) -> None:
        if camera in self.last or len(self.last) < MAX_SERVING:
            self.last[camera] = now

    def names(self, now: float) -> List[str]:
        if now - self.listed_at >= 0.5:
            for camera in [c for c, t in self.last.items() if now - t > SERVING_S]:
                del self.last[camera]
            self.listed, self.listed_at = sorted(self.last), now
        return self.listed


class DecoderLinks:
    def __init__(self, sockets: Sockets, config: Config, handler: str,
                 window: int) -> None:
        self.sockets = sockets
        self.runtime_dir = config.pipeline.runtime_dir
        self.handler = handler
        self.window = window
        self.credits = config.pipeline.dispatch != "round-robin"
        self.heartbeat = config.pipeline.heartbeat_ms / 1000.0
        self.inputs: Dict[str, zmq.Socket] = {}  # endpoint -> socket
        self.refused: Set[str] = set()  # socket files found that are not ours
        self.poller = zmq.Poller()
        self.last_beat = self.last_discovery = 0.0
        self.serving = Serving()

    def __len__(self) -> int:
        return len(self.inputs)

    def join(self, endpoints: List[str], now: float) -> None:
        """Connect to ``endpoints`` and to every decoder socket found."""
        for endpoint in endpoints:
            self.connect(endpoint)
        self.discover()
        self.last_discovery = now

    def connect(self, endpoint: str) -> None:
        if endpoint in self.inputs:
            return
        if self.credits:
            sock = self.sockets.make(zmq.DEALER, sndhwm=1000, rcvhwm=self.window + 1)
        else:
            sock = self.sockets.make(zmq.PULL, rcvhwm=1)
        self.sockets.connect(sock, endpoint)
        self.inputs[endpoint] = sock
        self.poller.register(sock, zmq.POLLIN)
        self.credit(sock, wire.NO_SEQ, 0)  # announce ourselves at once
        log.info("handler %s: connected to decoder %s", self.handler, endpoint)

    def discover(self) -> None:
        """Connect to decoder sockets that appeared in the runtime directory."""
        pattern = os.path.join(self.runtime_dir, layout.DECODER_SOCKETS)
        for path in sorted(glob.glob(pattern)):
            if "ipc://" + path in self.inputs or not self._ours(path):
                continue
            self.connect("ipc://" + path)

    def _ours(self, path: str) -> bool:
        """A socket our own user made (the decoders run as we do): group members
        can create files in the runtime directory, but not feed us frames."""
        try:
            info = os.lstat(path)
        except OSError:
            return False
        if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.geteuid():
            return True
        if path not in self.refused:
            self.refused.add(path)
            log.warning("handler %s: ignoring %s (not a socket of uid %d)", self.handler,
                        path, os.geteuid())
        return False

    def credit(self, sock: zmq.Socket, seq: int, stream: int, camera: str = "") -> None:
        """Frame ``seq`` of ``stream`` of ``camera`` is done (``NO_SEQ``: just
        announce us). The credit tells every decoder which cameras this
        handler serves now, for ``by-camera`` dispatch to spread them."""
        if not self.credits:
            return
        now = time.monotonic()
        if camera:
            self.serving.note(camera, now)
        meta = {"handler": self.handler, "window": self.window,
                "serving": self.serving.names(now)}
        send_nowait(sock, wire.control_parts(wire.CREDIT, meta, stream=stream,
                                                       seq=seq))

    def tick(self, now: float) -> None:
        """Heartbeat credits, and a look for new decoders, when due."""
        if now - self.last_beat >= self.heartbeat:
            self.last_beat = now
            for sock in self.inputs.values():
                self.credit(sock, wire.NO_SEQ, 0)
        if now - self.last_discovery >= DISCOVERY_INTERVAL:
            self.last_discovery = now
            self.discover()

    def receive(self, timeout: float) -> Iterator[Tuple[zmq.Socket, List[Any], float]]:
        """One message from each decoder that has one, waiting up to ``timeout``
        for the first: (socket, parts, ``perf_counter()`` before reading it)."""
        events = poll(self.poller, timeout)
        for sock in list(self.inputs.values()):
            if sock in events:
                started = time.perf_counter()
                parts = recv_parts(sock)
                if parts is not None:
                    yield sock, parts, started

    def leave(self) -> None:
        """Say BYE to every decoder (credit-based dispatch), as we stop."""
        if not self.credits:
            return
        for sock in self.inputs.values():
            send_nowait(sock, wire.control_parts(wire.BYE, {"handler": self.handler}))
            sock.setsockopt(zmq.LINGER, 200)  # let the BYE out
