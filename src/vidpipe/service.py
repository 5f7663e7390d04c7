"""Process plumbing shared by the three roles.

sd_notify (READY / WATCHDOG / STATUS / STOPPING), SIGTERM/SIGINT handling,
CPU pinning and logging. Without ``NOTIFY_SOCKET`` (a manual run) notifying
is silent; with it, failures to notify are logged once instead of being
swallowed the way the plain ``sdnotify`` package does.
"""

import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional

from vidpipe.names import one_line

log = logging.getLogger("vidpipe")
MUST_S = 5.0  # how long a notification that may not be lost is retried
THIRD_PARTY_LOGGERS = ("pika", "paho")
STATUS_MAX = 1000  # characters of STATUS= (systemctl status shows one line)


class Notifier:
    """Talks to systemd's notify socket. ``NOTIFY_SOCKET`` is taken out of the
    environment so that child processes do not inherit it."""

    def __init__(self, environ: Optional[Any] = None) -> None:
        env = os.environ if environ is None else environ
        self.address = env.pop("NOTIFY_SOCKET", None)
        self._client: Any = None
        self._failed = False
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        self.watchdog_interval: Optional[float] = None
        if usec and (not pid or pid == str(os.getpid())):
            try:
                self.watchdog_interval = max(0.05, int(usec) / 1e6 / 2.0)
            except ValueError:
                log.warning("ignoring WATCHDOG_USEC=%r: not an integer", usec)
        self._last_ping = 0.0
        self._last_status = ""
        if self.address:
            import sdnotify  # deferred: only services need it

            # sdnotify reads the address from the environment when it is built
            os.environ["NOTIFY_SOCKET"] = self.address
            try:
                self._client = sdnotify.SystemdNotifier(debug=True)
                # never let a busy or stuck notify socket stall the video loop
                self._client.socket.setblocking(False)
            except OSError as exc:
                self._client = None
                self._report(exc)
            finally:
                os.environ.pop("NOTIFY_SOCKET", None)
        self.lost = 0

    @property
    def enabled(self) -> bool:
        return self._client is not None

    def _report(self, exc: Exception) -> None:
        if not self._failed:
            log.error("cannot notify systemd at %s: %s", self.address, exc)
            self._failed = True

    def send(self, text: str, must: bool = False) -> bool:
        """Send one notification without blocking; ``False`` if it was lost.
        ``must``: one that may not be lost (READY, STOPPING, the watchdog's
        timeout) is retried for up to ``MUST_S`` while systemd's socket is
        full (a socket queues net.unix.max_dgram_qlen datagrams, then refuses)."""
        if self._client is None:
            return False
        deadline = time.monotonic() + (MUST_S if must else 0.0)
        while True:
            try:
                self._client.notify(text)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self.lost += 1  # systemd is not reading right now
                    return False
                time.sleep(0.02)
            except (OSError, UnicodeError) as exc:
                self._report(exc)
                return False

    def ready(self, status: str = "") -> None:
        self.send("READY=1\nSTATUS={}".format(one_line(status, STATUS_MAX)) if status
                  else "READY=1", must=True)

    def stopping(self) -> None:
        self.send("STOPPING=1", must=True)

    def extend_watchdog(self, seconds: float) -> None:
        """Give the watchdog ``seconds`` for work that cannot ping it (a C
        extension's import holds the interpreter: OpenCV's takes seconds, and
        far more under emulation); :meth:`restore_watchdog` ends it."""
        if self.watchdog_interval is not None:
            self.send("WATCHDOG_USEC={}\nWATCHDOG=1".format(int(seconds * 1e6)), must=True)

    def restore_watchdog(self) -> None:
        if self.watchdog_interval is not None:
            usec = int(self.watchdog_interval * 2.0 * 1e6)
            self.send("WATCHDOG_USEC={}\nWATCHDOG=1".format(usec), must=True)
            self._last_ping = time.monotonic()

    def status(self, text: str) -> None:
        """``STATUS=`` as one line: a line break in ``text`` (a broker's close
        reason, a camera's error) would make the rest a notification of its
        own (``WATCHDOG=trigger``, ``STOPPING=1``), so it never gets there."""
        if text != self._last_status:
            self._last_status = text
            self.send("STATUS={}".format(one_line(text, STATUS_MAX)))

    def watchdog(self, now: Optional[float] = None) -> None:
        """Ping the watchdog; call it from the loop that does the work."""
        if self.watchdog_interval is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._last_ping >= self.watchdog_interval / 2.0:
            if self.send("WATCHDOG=1"):  # a lost ping is tried again next time round
                self._last_ping = now


class Reporter:
    """A role's voice: ``STATUS=`` to systemd and its numbers to the status board
    twice a second, and its stats lines to the log every ``interval`` seconds
    (0: never)."""

    def __init__(self, notifier: Notifier, interval: float, status: Callable[[float], str],
                 lines: Optional[Callable[[float], List[str]]] = None,
                 board: Any = None,
                 snapshot: Optional[Callable[[float], Dict[str, Any]]] = None) -> None:
        self.notifier = notifier
        self.interval = interval
        self.status = status
        self.lines = lines or (lambda now: [status(now)])
        self.board = board
        self.snapshot = snapshot
        self.last_status = self.last_log = time.monotonic()

    def ready(self) -> None:
        """READY=1 with the first status line, and the first board entry."""
        now = time.monotonic()
        self.notifier.ready(self.status(now))
        self.publish(now)

    def publish(self, now: float, state: str = "running") -> None:
        """Put the role's numbers on the board now (at start, each tick, at exit)."""
        if self.board is not None and self.snapshot is not None:
            doc = self.snapshot(now)
            doc["status"] = self.status(now)
            self.board.publish(doc, state)

    def refresh(self, now: float) -> None:
        """STATUS and the board now, not at the next tick."""
        self.last_status = now
        self.notifier.status(self.status(now))
        self.publish(now)

    def tick(self, now: float) -> None:
        if now - self.last_status >= 0.5:
            self.last_status = now
            self.notifier.status(self.status(now))
            self.publish(now)
        if self.interval and now - self.last_log >= self.interval:
            self.last_log = now
            for line in self.lines(now):
                log.info("%s", line)


class Stopper:
    """Turns SIGTERM / SIGINT into a flag the main loop checks.

    A Python signal handler runs only when the main thread gets the
    interpreter. While another thread holds it for long (importing OpenCV
    does, in C: 0.3 s here, over 5 s in an emulated VM), the flag would come
    too late and systemd would kill the role after TimeoutStopSec, a failed
    stop. For such stretches, when the role has nothing to finish yet,
    :meth:`let_kernel_stop` leaves the signals to the kernel: the process
    ends at once, which systemd counts as a clean stop."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self.installed = False

    def install(self) -> "Stopper":
        for sig in self.SIGNALS:
            signal.signal(sig, self._handle)
        self.installed = True
        return self

    def let_kernel_stop(self) -> None:
        """SIGTERM / SIGINT end the process without running any Python, until
        :meth:`take_back`."""
        if self._ours():
            for sig in self.SIGNALS:
                signal.signal(sig, signal.SIG_DFL)

    def take_back(self) -> None:
        """The flag again, from here on (the role now has work it must finish)."""
        if self._ours():
            self.install()

    def _ours(self) -> bool:
        """Only an installed stopper, from the main thread, changes the signals
        (a stopper in a test rig stays as it is)."""
        return self.installed and threading.current_thread() is threading.main_thread()

    def _handle(self, signum: int, _frame: Any) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name


def pin_cpus(cpus: Iterable[int]) -> List[int]:
    """Pin this process to ``cpus`` and size OpenCV's thread pool to match.

    Returns the CPUs now allowed. An empty list leaves affinity alone.
    """
    wanted = sorted(set(cpus))
    if wanted:
        os.sched_setaffinity(0, wanted)
        try:
            import cv2

            cv2.setNumThreads(len(wanted))
        except ImportError:  # pragma: no cover
            pass
    return sorted(os.sched_getaffinity(0))


def setup_logging(level: str = "info") -> None:
    """One line per event on stderr; the journal adds time and unit."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    fmt = "%(name)s: %(levelname)s: %(message)s"
    if not os.environ.get("INVOCATION_ID"):  # not under systemd: add a timestamp
        fmt = "%(asctime)s " + fmt
    handler.setFormatter(logging.Formatter(fmt))
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # client libraries log every failed connect at ERROR with a traceback
    # (pika: ~7 lines every few seconds while a broker is away); vidpipe says
    # it once in its own words, so theirs are heard only at log_level debug
    quiet = logging.NOTSET if root.level <= logging.DEBUG else logging.CRITICAL
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
