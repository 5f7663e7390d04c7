"""ZeroMQ sockets as vidpipe uses them.

Every socket: ``LINGER=0`` (a stopping process never hangs on unsent
messages), small high-water marks (a realtime pipeline drops, it does not
queue), ``MAXMSGSIZE`` on receivers (an oversized message is refused by
libzmq before it is allocated). Every receive happens after a poll, never as a
blocking ``recv()`` without a timeout. ``ipc://`` endpoints get their
directory created and a stale socket file from a crashed run removed.
"""

import logging
import os
import stat
from typing import Any, List, Optional

import zmq

from vidpipe.link import wire
from vidpipe.stats import Tally, often

log = logging.getLogger("vidpipe.transport")
#: the largest part of a control message (CREDIT, BYE): header or JSON
CONTROL_PART = wire.MAX_META_BYTES
#: the largest XPUB subscription message: a flag byte and a camera name
SUBSCRIPTION_PART = 64
#: parts kept of one message: the longest kind has 3, a ROUTER adds the
#: identity. The rest of a longer (hostile) message is read and let go at once.
MAX_PARTS = 4


def ipc_path(endpoint: str) -> Optional[str]:
    return endpoint[len("ipc://"):] if endpoint.startswith("ipc://") else None


def prepare_bind(endpoint: str) -> None:
    """Create an ipc endpoint's directory and remove a stale socket file."""
    path = ipc_path(endpoint)
    if not path:
        return
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(mode):
        # A socket file left by a crashed process: nobody can be listening on
        # it, because bind() below would then fail with EADDRINUSE anyway.
        os.unlink(path)


def cleanup_bind(endpoint: str) -> None:
    path = ipc_path(endpoint)
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass


class Sockets:
    """A context plus the sockets made from it; ``close()`` closes them all."""

    def __init__(self, max_bytes: int, curve: Optional[Any] = None) -> None:
        self.context = zmq.Context()
        self.max_bytes = max_bytes
        #: a :class:`vidpipe.link.curve.Curve` securing tcp:// links, or None
        self.curve = curve
        self._sockets: List[zmq.Socket] = []
        self._bound: List[str] = []

    def make(self, kind: int, sndhwm: int = 4, rcvhwm: int = 4, receives: bool = True,
             immediate: bool = False, max_part: Optional[int] = None) -> zmq.Socket:
        """A socket with vidpipe's options. ``max_part``: the largest part a
        receiving socket accepts (libzmq drops the peer that sends more);
        default: a frame payload (``max_bytes``) plus room for the JSON part.
        Sockets that only carry small control messages pass
        :data:`CONTROL_PART`, XPUB publishers :data:`SUBSCRIPTION_PART`."""
        sock = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, sndhwm)
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
        if receives:
            limit = max_part if max_part is not None else \
                self.max_bytes + wire.MAX_META_BYTES + 4096
            sock.setsockopt(zmq.MAXMSGSIZE, limit)
        if immediate:
            sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
        self._sockets.append(sock)
        return sock

    def connect(self, sock: zmq.Socket, endpoint: str) -> None:
        if self.curve is not None and endpoint.startswith("tcp://"):
            self.curve.client(sock)
        sock.connect(endpoint)

    def bind(self, sock: zmq.Socket, endpoint: str, mode: int = 0o600) -> None:
        """Bind; an ipc socket file gets ``mode``: 0600 for the pipeline's own
        links (decoders and handlers, handlers and the collector all run as
        the same user: nobody else may pose as one of them), 0660 for taps
        (operators in the service's group read them)."""
        if self.curve is not None and endpoint.startswith("tcp://"):
            self.curve.serve(self.context, sock)
        prepare_bind(endpoint)
        path = ipc_path(endpoint)
        old = os.umask(0o177) if path else None  # no moment with wider access
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise OSError("cannot bind {}: {}".format(endpoint, exc.strerror)) from None
        finally:
            if old is not None:
                os.umask(old)
        if path:
            try:
                os.chmod(path, mode)
            except OSError:
                pass
        self._bound.append(endpoint)

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()  # each socket's own LINGER (0 unless raised for a last word)
        self._sockets.clear()
        for endpoint in self._bound:
            cleanup_bind(endpoint)
        self._bound.clear()
        if self.curve is not None:
            self.curve.stop()
        self.context.term()


def send_nowait(sock: zmq.Socket, parts: List[Any], copy: bool = False) -> bool:
    """Send without ever blocking; ``False`` when the peer cannot take it now."""
    try:
        sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=copy)
        return True
    except zmq.Again:
        return False
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EHOSTUNREACH:  # ROUTER_MANDATORY: peer is gone
            return False
        raise


def _recv_parts(sock: zmq.Socket) -> List[Any]:
    """The parts of one message: small ones as bytes, pixels as ``zmq.Frame``.

    A shared-memory frame is all small parts (header and a reference), and
    bytes cost a fraction of a Frame object on the hot path; a part that may
    hold pixels is received without a copy. The header, the first part, says
    which is which. Raises ``zmq.Again`` when no message is waiting."""
    first = sock.recv(flags=zmq.NOBLOCK)
    parts: List[Any] = [first]
    small = len(first) == wire.HEADER_SIZE and (
        first[wire.KIND_OFFSET] not in (wire.FRAME, wire.RESULT)
        or first[wire.ENCODING_OFFSET] == wire.SHM)
    while sock.getsockopt(zmq.RCVMORE):
        if len(parts) > MAX_PARTS:  # kept: one too many, so decode says bad_parts
            sock.recv(copy=False)  # let it go at once (the rest is already here)
            continue
        parts.append(sock.recv(copy=small))  # the rest is already here: never blocks
    return parts


def recv_bounded(sock: zmq.Socket) -> List[Any]:
    """Up to ``MAX_PARTS + 1`` parts of one message as ``zmq.Frame``; the
    parts beyond are read and let go."""
    parts: List[Any] = [sock.recv(flags=zmq.NOBLOCK, copy=False)]
    while sock.getsockopt(zmq.RCVMORE):
        part = sock.recv(copy=False)
        if len(parts) <= MAX_PARTS:
            parts.append(part)
    return parts


def recv_parts(sock: zmq.Socket) -> Optional[List[Any]]:
    """The parts of one message that is ready (see :func:`_recv_parts`), or
    ``None`` when none is waiting."""
    try:
        return _recv_parts(sock)
    except zmq.Again:
        return None


def decode_parts(parts: List[Any], bad: Tally, max_bytes: int) -> Optional[wire.Message]:
    """``parts`` as a message; a malformed one is counted in ``bad`` by reason
    (and logged now and then) and ``None`` is returned."""
    try:
        return wire.decode(parts, max_bytes)
    except wire.WireError as exc:
        count = bad.add(exc.reason)
        if often(count):
            log.warning("dropped malformed message (%s); %d so far", exc, count)
        return None


def recv_message(sock: zmq.Socket, bad: Tally, max_bytes: int,
                 routed: bool = False) -> Optional[Any]:
    """Receive one message that is ready; malformed ones are counted in ``bad``
    (by reason) and ``None`` is returned. With ``routed`` the first part is a
    ROUTER identity and ``(identity, fd, message)`` is returned, ``fd`` being the
    connection it came in on (matched against the monitor's disconnect events)."""
    if not routed:
        parts = recv_parts(sock)
        return None if parts is None else decode_parts(parts, bad, max_bytes)
    try:
        parts = recv_bounded(sock)
    except zmq.Again:
        return None
    identity = parts[0].bytes
    parts = parts[1:]
    fd = -1
    # libzmq makes the identity frame itself and gives it no source fd: the fd
    # is only on the frames that came off the connection
    if parts:
        try:
            fd = parts[0].get(zmq.SRCFD)
        except zmq.ZMQError:
            fd = -1
    message = decode_parts(parts, bad, max_bytes)
    return None if message is None else (identity, fd, message)


def poll(poller: zmq.Poller, timeout_s: float) -> dict:
    """Poll with a timeout in seconds; an interrupted poll returns no events."""
    try:
        return dict(poller.poll(max(0, int(timeout_s * 1000))))
    except zmq.ZMQError as exc:
        if exc.errno == zmq.EINTR:
            return {}
        raise

