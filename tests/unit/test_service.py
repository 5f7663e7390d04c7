"""sd_notify against a real AF_UNIX datagram socket, CPU pinning for real."""

import os
from pathlib import Path
from typing import Dict

import pytest

from conftest import NotifySocket
from vidpipe.service import Notifier, pin_cpus


def test_notifier_speaks_the_protocol(short_tmp: Path) -> None:
    sock = NotifySocket(str(short_tmp / "notify"), reading=False)
    env: Dict[str, str] = {"NOTIFY_SOCKET": str(short_tmp / "notify"),
                           "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
    notifier = Notifier(env)
    assert "NOTIFY_SOCKET" not in env  # children do not inherit it
    assert notifier.enabled and notifier.watchdog_interval == pytest.approx(0.1)
    notifier.ready("starting")
    notifier.status("3.0 fps")
    notifier.status("3.0 fps")  # unchanged status is not re-sent
    notifier.watchdog(now=100.0)
    notifier.watchdog(now=100.01)  # rate-limited
    notifier.watchdog(now=100.2)
    notifier.stopping()
    assert sock.received() == ["READY=1\nSTATUS=starting", "STATUS=3.0 fps", "WATCHDOG=1",
                              "WATCHDOG=1", "STOPPING=1"]


def test_ready_is_never_lost_to_a_busy_systemd(short_tmp: Path) -> None:
    """systemd that is slow to read (a loaded box, emulation) leaves its socket
    full: a status line may be dropped, READY may not (the unit would never
    start), and a lost watchdog ping is tried again at once."""
    import threading
    import time

    sock = NotifySocket(str(short_tmp / "busy"), reading=False)
    notifier = Notifier({"NOTIFY_SOCKET": str(short_tmp / "busy"), "WATCHDOG_USEC": "200000",
                         "WATCHDOG_PID": str(os.getpid())})
    sent = 0
    while notifier.send("STATUS=filler {}".format(sent)):
        sent += 1  # until the socket's queue is full
    assert sent > 0 and notifier.lost == 1
    notifier.watchdog(now=100.0)  # lost: the socket is full
    assert notifier.lost == 2
    def catch_up() -> None:  # systemd gets round to the queue
        sock.sock.settimeout(5)
        for _ in range(sent):
            sock.sock.recv(4096)

    threading.Timer(0.5, catch_up).start()
    started = time.monotonic()
    notifier.ready("up")
    assert 0.3 < time.monotonic() - started < 5
    notifier.watchdog(now=100.01)  # retried on the next turn of the loop, not 2.5 s later
    time.sleep(0.2)
    got = sock.received()
    assert got[:2] == ["READY=1\nSTATUS=up", "WATCHDOG=1"], got
    notifier.extend_watchdog(300)
    notifier.restore_watchdog()
    assert sock.received() == ["WATCHDOG_USEC=300000000\nWATCHDOG=1",
                              "WATCHDOG_USEC=200000\nWATCHDOG=1"]


def test_watchdog_for_another_pid_is_ignored(short_tmp: Path) -> None:
    NotifySocket(str(short_tmp / "n"), reading=False)
    notifier = Notifier({"NOTIFY_SOCKET": str(short_tmp / "n"), "WATCHDOG_USEC": "1000000",
                         "WATCHDOG_PID": "1"})
    assert notifier.watchdog_interval is None


def test_without_notify_socket_everything_is_silent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    notifier.ready()
    notifier.watchdog()


def test_a_broken_notify_socket_is_reported_not_swallowed(short_tmp: Path, caplog) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(short_tmp / "absent")})
    assert not notifier.enabled
    assert "cannot notify systemd" in caplog.text


def test_a_full_notify_socket_never_blocks(short_tmp: Path) -> None:
    sock = NotifySocket(str(short_tmp / "full"), reading=False)
    notifier = Notifier({"NOTIFY_SOCKET": str(short_tmp / "full")})
    for i in range(5000):  # nobody reads: the kernel queue fills up
        notifier.send("STATUS={}".format(i))
    assert notifier.lost > 0
    sock.close()


def test_pinning_restricts_affinity() -> None:
    before = os.sched_getaffinity(0)
    try:
        assert pin_cpus([0]) == [0]
        assert os.sched_getaffinity(0) == {0}
    finally:
        os.sched_setaffinity(0, before)
    assert pin_cpus([]) == sorted(before)


def test_a_status_text_never_becomes_more_than_one_assignment(short_tmp: Path) -> None:
    """Issue 24: an AMQP broker's close reason (line breaks allowed) reached
    STATUS= and became assignments of its own: ``WATCHDOG=trigger`` had the
    collector killed by its own watchdog."""
    sock = NotifySocket(str(short_tmp / "notify"), reading=False)
    notifier = Notifier({"NOTIFY_SOCKET": str(short_tmp / "notify")})
    notifier.ready("amqp refused: bye\nWATCHDOG=trigger")
    notifier.status("amqp refused: bye\nWATCHDOG=trigger\nSTOPPING=1\r\x1b[2J" + "x" * 5000)
    ready, status = sock.received()
    assert ready == "READY=1\nSTATUS=amqp refused: bye?WATCHDOG=trigger"
    assert status.count("\n") == 0 and status.startswith("STATUS=amqp refused: bye?WATCHDOG")
    assert len(status) <= len("STATUS=") + 1000 and status.endswith("...")
    sock.close()
