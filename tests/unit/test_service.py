"""sd_notify against a real AF_UNIX datagram socket, CPU pinning for real."""

import os
import socket
from pathlib import Path
from typing import Dict, List

import pytest

from vidpipe.service import Notifier, pin_cpus


def listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(1.0)
    return sock


def received(sock: socket.socket) -> List[str]:
    out = []
    sock.settimeout(0.05)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except socket.timeout:
        return out


def test_notifier_speaks_the_protocol(short_tmp: Path) -> None:
    sock = listener(short_tmp / "notify")
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
    assert received(sock) == ["READY=1\nSTATUS=starting", "STATUS=3.0 fps", "WATCHDOG=1",
                              "WATCHDOG=1", "STOPPING=1"]


def test_watchdog_for_another_pid_is_ignored(short_tmp: Path) -> None:
    listener(short_tmp / "n")
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
    sock = listener(short_tmp / "full")
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
