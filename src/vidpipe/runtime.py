"""The role runtime: how a decoder, handler or collector is wired as a service.

Every role is a :class:`Role`. The runtime builds what each of them needs
the same way (systemd notifier, SIGTERM flag, sockets with the configured
security, the status reporter and its board entry), owns the service's life
(``start`` → ``step`` until stopped or done → ``finish`` → ``close``, with
``STOPPING=1`` sent once, as the loop ends), and gives the roles one way to
read a burst of messages (:meth:`Role.drain`), one fence around work that
must cost only itself when it fails (:meth:`Role.fenced`), and one way to
word a status line (:meth:`Role.compose_status`). A role module then only
says what the role does.
"""

import logging
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import zmq

from vidpipe.link import curve as security, sockets
from vidpipe.status.board import Board
from vidpipe.config import Config
from vidpipe.service import Notifier, Reporter, Stopper
from vidpipe.stats import Tally, often

#: the most messages one :meth:`Role.drain` reads before the loop looks at
#: its other duties (signals, the watchdog, expiring frames)
BURST = 1000


class Role:
    """The shared shape of the three roles. Subclasses set ``role`` and
    implement :meth:`start`, :meth:`step`, :meth:`status_text` and
    :meth:`snapshot`; :meth:`finish` and :meth:`release` when they have
    something to do at the end."""

    role = ""

    def __init__(self, config: Config, name: str, notifier: Optional[Notifier] = None,
                 stopper: Optional[Stopper] = None) -> None:
        self.config = config
        self.name = name
        #: how this process names itself in logs ("handler 2", "cam0")
        self.label = name if self.role == "decoder" else "{} {}".format(self.role, name)
        self.log = logging.getLogger("vidpipe." + self.role)
        self.notifier = notifier or Notifier({})
        self.stopper = stopper or Stopper()
        pipe = config.pipeline
        curve = security.make(config.security, config.path, "{} {}".format(self.role, name))
        self.sockets = sockets.Sockets(pipe.max_frame_bytes, curve)
        #: messages refused (malformed, unexpected, or lost to a bug), by reason
        self.bad = Tally()
        self.reporter = Reporter(self.notifier, pipe.stats_interval_s, self.status_text,
                                 self.stats_lines, board=Board(pipe.runtime_dir, self.role, name),
                                 snapshot=self.snapshot)
        self._stopping_sent = self._closed = False

    # ------------------------------------------------------------------ life

    def run(self) -> int:
        """The service: start, step until SIGTERM or the role is done, finish."""
        self.start()
        try:
            while not self.stopper.requested:
                if not self.step():
                    break
            self.stopping()
            return self.finish()
        finally:
            self.close()

    def start(self) -> None:
        raise NotImplementedError

    def step(self) -> bool:
        """One turn of the main loop; ``False`` when the role is done."""
        raise NotImplementedError

    def finish(self) -> int:
        """What to do once the loop ends (drain, say goodbye); the exit code."""
        return 0

    def stopping(self) -> None:
        """``STOPPING=1``, once: from here on systemd knows we are on our way out."""
        if not self._stopping_sent:
            self._stopping_sent = True
            self.notifier.stopping()

    def close(self) -> None:
        """Everything the role holds, once (a second call does nothing)."""
        if self._closed:
            return
        self._closed = True
        self.stopping()
        self.reporter.publish(time.monotonic(), "stopped")
        try:
            self.release()
        finally:
            self.sockets.close()  # lingers: what is queued still goes out
            self.unmap()

    def release(self) -> None:
        """The role's own resources, before its sockets close."""

    def unmap(self) -> None:
        """Shared memory the role wrote, once its last message has gone out."""

    # ------------------------------------------------------------------ messages

    def drain(self, sock: zmq.Socket, handle: Callable[[Any], None],
              routed: bool = False) -> int:
        """Read and handle up to :data:`BURST` messages waiting on ``sock``,
        each behind :meth:`fenced`; returns how many were read. ``handle``
        gets a :class:`wire.Message`, or ``(identity, fd, message)`` when
        ``routed``. Malformed messages are counted in ``bad`` and skipped.
        The watchdog is pinged as the burst goes: on a slow box a backlog of
        a thousand messages, each through the outputs, can outlast WatchdogSec
        (it did in the emulated VM: the collector was killed three times)."""
        read = 0
        for _ in range(BURST):
            got = sockets.recv_message(sock, self.bad, self.sockets.max_bytes, routed=routed)
            if got is None:
                if not sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    break
                continue
            read += 1
            self.fenced("message", handle, got)
            self.notifier.watchdog()
        return read

    def fenced(self, what: Union[str, Callable[[], str]], call: Callable[..., Any],
               *args: Any, errors: Optional[Tally] = None,
               label: str = "internal_error") -> bool:
        """``call(*args)``; ``False`` if it raised. That costs this one call:
        counted (in ``errors`` under ``label``; by default in ``bad`` as
        ``internal_error``) and logged with its traceback at a falling rate
        (``what`` names what was lost; a callable is asked only then)."""
        try:
            call(*args)
            return True
        except Exception as exc:  # a bug, or an input nobody foresaw
            self.lost(what, exc, errors, label)
            return False

    def lost(self, what: Union[str, Callable[[], str]], exc: Exception,
             errors: Optional[Tally] = None, label: str = "internal_error") -> None:
        """The except branch of :meth:`fenced`, for loops that catch themselves
        (a hot path: nothing is built unless something failed). Call it from
        inside the ``except`` block: the traceback is logged."""
        count = (self.bad if errors is None else errors).add(label)
        if often(count):
            self.log.exception("%s: %s lost (%d so far): %s", self.label,
                               what() if callable(what) else what, count, exc)

    # ------------------------------------------------------------------ status

    def status_text(self, now: Optional[float] = None) -> str:
        raise NotImplementedError

    def stats_lines(self, now: float) -> List[str]:
        """What is logged every ``stats_interval_s``."""
        return [self.status_text(now)]

    def snapshot(self, now: float) -> Dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def compose_status(head: str, extras: Sequence[Tuple[str, Any]], why: str,
                       sep: str = ", ") -> str:
        """``head``, then each ``(label, value)`` whose value is not empty or
        zero, then `` - why`` when there is a reason for being idle."""
        text = head
        for label, value in extras:
            if value:
                text += "{}{} {}".format(sep, label, value.text() if isinstance(value, Tally)
                                         else value)
        return text + (" - " + why if why else "")
