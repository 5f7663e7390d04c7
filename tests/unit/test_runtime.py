"""The role runtime (vidpipe.runtime): a role's life, its one drain and its
one fence, on real ZeroMQ sockets and a real notify socket."""

import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
import zmq

from conftest import NotifySocket, wait_until
from vidpipe.link import wire
from vidpipe.config import config_from_dict
from vidpipe.runtime import BURST, Role
from vidpipe.service import Notifier
from vidpipe.stats import Tally


class Counting(Role):
    """A role that counts to ``steps`` and says so."""

    role = "collector"

    def __init__(self, runtime: Path, steps: int, **kw: Any) -> None:
        config = config_from_dict({"pipeline": {"runtime_dir": str(runtime)}})
        super().__init__(config, "t", **kw)
        self.steps, self.done, self.events = steps, 0, []  # type: ignore[var-annotated]

    def start(self) -> None:
        self.events.append("start")
        self.reporter.ready()

    def step(self) -> bool:
        self.done += 1
        if self.done == 2:
            raise_later = self.fenced("step 2's work", lambda: 1 / 0)
            self.events.append("fenced" if not raise_later else "?")
        return self.done < self.steps

    def finish(self) -> int:
        self.events.append("finish")
        return 3

    def release(self) -> None:
        self.events.append("release")

    def unmap(self) -> None:
        self.events.append("unmap")

    def status_text(self, now: Optional[float] = None) -> str:
        return self.compose_status("t: {} steps".format(self.done),
                                   [("malformed", self.bad), ("zero", 0)], "")

    def snapshot(self, now: float) -> Dict[str, Any]:
        return {"steps": self.done}


def test_a_role_lives_start_steps_finish_close_with_stopping_sent_once(tmp_path: Path) -> None:
    notify = NotifySocket(str(tmp_path / "notify"))
    try:
        role = Counting(tmp_path / "run", 5,
                        notifier=Notifier({"NOTIFY_SOCKET": notify.path}))
        assert role.run() == 3  # finish()'s exit code
        assert role.done == 5
        assert role.events == ["start", "fenced", "finish", "release", "unmap"]
        assert role.bad.as_dict() == {"internal_error": 1}  # the fenced failure, counted
        wait_until(lambda: any("STOPPING" in m for m in notify.drain()), 5, "STOPPING=1")
        messages = notify.drain()
        assert [m for m in messages if "READY" in m][0]["STATUS"] == "t: 0 steps"
        assert sum("STOPPING" in m for m in messages) == 1
        assert role.status_text() == "t: 5 steps, malformed internal_error=1"
    finally:
        notify.close()


def test_a_stop_request_ends_the_loop_and_still_finishes(tmp_path: Path) -> None:
    role = Counting(tmp_path / "run", 10 ** 9)
    role.stopper.requested = True
    assert role.run() == 3
    assert role.done == 0 and role.events == ["start", "finish", "release", "unmap"]


def test_drain_reads_a_burst_counts_the_malformed_and_fences_each_message(
        tmp_path: Path) -> None:
    role = Counting(tmp_path / "run", 1)
    ctx = zmq.Context.instance()
    pull = role.sockets.make(zmq.PULL, rcvhwm=10000)
    endpoint = "ipc://{}/drain.sock".format(tmp_path)
    role.sockets.bind(pull, endpoint)
    push = ctx.socket(zmq.PUSH)
    push.connect(endpoint)
    try:
        for seq in range(BURST + 5):
            push.send_multipart(wire.control_parts(wire.DROP, {"reason": "x"}, "cam0", 1, seq))
        push.send_multipart([b"not a header", b"{}"])
        seen: List[int] = []

        def handle(msg: wire.Message) -> None:
            if msg.header.seq == 7:
                raise RuntimeError("a bug on message 7")
            seen.append(msg.header.seq)

        wait_until(lambda: pull.poll(0), 5, "messages")
        time.sleep(0.5)  # libzmq's I/O thread moves the burst over meanwhile
        read = role.drain(pull, handle)
        # one burst at most, then the loop's other duties (fewer only if the
        # I/O thread had not moved them all yet: a loaded box, as in a build)
        assert read <= BURST
        calls = 1
        deadline = time.monotonic() + 10
        while read < BURST + 5 and time.monotonic() < deadline:
            if pull.poll(100):
                got = role.drain(pull, handle)
                assert got <= BURST
                read += got
                calls += 1
        assert read == BURST + 5  # the malformed one is not "read"
        assert calls >= 2  # it took more than one drain: a burst is bounded
        assert seen == [seq for seq in range(BURST + 5) if seq != 7]
        assert role.bad["internal_error"] == 1 and sum(role.bad.as_dict().values()) == 2
    finally:
        push.close(linger=0)
        role.close()


def test_a_long_burst_keeps_pinging_the_watchdog(tmp_path: Path) -> None:
    """Messages that take long to handle (a slow box, a backlog): the watchdog
    hears from the role during the burst, not only between steps."""
    notify = NotifySocket(str(tmp_path / "notify"))
    role = Counting(tmp_path / "run", 1, notifier=Notifier(
        {"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"}))
    pull = role.sockets.make(zmq.PULL, rcvhwm=10000)
    endpoint = "ipc://{}/slow.sock".format(tmp_path)
    role.sockets.bind(pull, endpoint)
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.connect(endpoint)
    try:
        for seq in range(30):
            push.send_multipart(wire.control_parts(wire.DROP, {"reason": "x"}, "cam0", 1, seq))
        wait_until(lambda: pull.poll(0), 5, "messages")
        time.sleep(0.2)  # all 30 queued
        before = len(notify.drain())
        started = time.monotonic()
        assert role.drain(pull, lambda msg: time.sleep(0.03)) == 30
        took = time.monotonic() - started
        time.sleep(0.2)  # the socket's reader thread catches up
        pings = [m for m in notify.drain()[before:] if m.get("WATCHDOG") == "1"]
        # WatchdogSec 0.4 s: a ping at least every 0.1 s of the burst
        assert took > 0.8 and len(pings) >= int(took / 0.2), (took, len(pings))
    finally:
        push.close(linger=0)
        role.close()
        notify.close()


def test_fenced_counts_into_the_tally_and_label_given() -> None:
    role = Counting.__new__(Counting)  # only the fence: no sockets needed
    role.bad, role.label = Tally(), "collector t"
    import logging

    role.log = logging.getLogger("test")
    errors = Tally()
    asked: List[str] = []

    def what() -> str:
        asked.append("x")
        return "output X's emit"

    assert role.fenced(what, lambda: None, errors=errors, label="X") is True
    assert asked == []  # the description is made only when something was lost
    assert role.fenced(what, lambda: [][1], errors=errors, label="X") is False
    assert errors.as_dict() == {"X": 1} and not role.bad and asked == ["x"]


@pytest.mark.parametrize("value,shown", [(0, False), ("", False), (Tally(), False),
                                         (2, True), ("dla0", True)])
def test_compose_status_shows_only_what_is_there(value: Any, shown: bool) -> None:
    text = Role.compose_status("head", [("x", value)], "why")
    assert text == ("head, x {} - why".format(value) if shown else "head - why")


def test_no_role_module_builds_its_own_plumbing() -> None:
    """The runtime is the one place: no role makes its notifier, security,
    reporter or board itself, or drains with a loop of its own."""
    src = Path(__file__).resolve().parents[2] / "src" / "vidpipe"
    for role in ("decoder", "handler", "collector"):
        text = (src / (role + ".py")).read_text()
        for own in ("security.make", "Reporter(", "Board(", "Notifier({})", "range(1000)",
                    "Stopper()", "log.exception"):
            assert own not in text, "{}.py: {}".format(role, own)
    assert os.path.exists(str(src / "runtime.py"))
