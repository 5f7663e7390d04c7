"""What systemd sees of the roles: READY, WATCHDOG, STATUS, and CPU pinning.

Each role runs as a real process with ``NOTIFY_SOCKET`` pointing at a real
datagram socket (tests/conftest.py), as systemd would run it."""

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List

from conftest import SRC, wait_until
from helpers import camera


def cam(**extra: Any) -> Dict[str, Any]:
    """A small live test-pattern camera."""
    return camera(0, 320, 240, **extra)


def watchdog_times(role: Any) -> List[float]:
    return [float(m["_t"]) for m in role.notify.drain() if m.get("WATCHDOG") == "1"]


def test_ready_comes_after_the_sockets_are_bound(pipeline: Any) -> None:
    pipeline.write_config({"cameras": {"cam0": cam()}})
    collector = pipeline.start("collector", "main", ready=False)
    collector.ready()
    assert (pipeline.runtime / "collector.sock").exists()
    decoder = pipeline.start("decoder", "cam0", ready=False)
    msg = decoder.ready()
    assert (pipeline.runtime / "decoder-cam0.sock").exists()
    assert "STATUS" in msg and "no handler connected" in msg["STATUS"]


def test_watchdog_pings_stop_while_a_stage_hangs_and_resume(pipeline: Any) -> None:
    pipeline.write_config({
        "cameras": {"cam0": cam(fps=2)},
        "handlers": {"stages": ["sleep"]},
        "stage": {"sleep": {"ms": 1500}},
    })
    pipeline.start("collector", "main")
    env = {"WATCHDOG_USEC": "400000"}  # systemd would kill after 0.4 s without a ping
    handler = pipeline.start("handler", "1", env=env)
    time.sleep(0.6)
    before = watchdog_times(handler)
    assert len(before) >= 2  # pinging while idle
    pipeline.start("decoder", "cam0")
    time.sleep(5)
    times = watchdog_times(handler)
    gaps = [b - a for a, b in zip(times, times[1:])]
    # stuck in the stage: no ping for the 1.5 s it sleeps ...
    assert max(gaps) >= 1.3, gaps
    # ... and pings again between frames
    assert times[-1] > times[0] + 3 and len(times) > len(before) + 3
    status = handler.notify.last("STATUS") or ""
    assert re.match(r"handler 1: [0-9.]+ fps, processed [1-9][0-9]*, latency p50 [0-9.]+ "
                    r"p99 [0-9.]+ ms", status), status


def test_idle_roles_keep_pinging_without_work(pipeline: Any) -> None:
    pipeline.write_config({"cameras": {"cam0": cam(source="/dev/video-absent-77")}})
    decoder = pipeline.start("decoder", "cam0", env={"WATCHDOG_USEC": "200000"})
    time.sleep(1.0)
    times = watchdog_times(decoder)
    assert len(times) >= 5 and max(b - a for a, b in zip(times, times[1:])) < 0.3
    status = decoder.notify.last("STATUS") or ""
    assert "waiting for source" in status and "does not exist" in status, status


def test_status_says_why_frames_do_not_flow(pipeline: Any) -> None:
    pipeline.write_config({"cameras": {"cam0": cam()}, "handlers": {"stages": ["gray"]}})
    decoder = pipeline.start("decoder", "cam0")
    time.sleep(0.8)
    assert "no handler connected" in (decoder.notify.last("STATUS") or "")
    handler = pipeline.start("handler", "1")
    # ready, the handler waits for its link to the collector before it takes
    # frames (their results would be lost), then takes them anyway
    seen = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = handler.notify.last("STATUS") or ""
        for why in ("waiting for the collector", "collector unreachable"):
            if why in status and why not in seen:
                seen.append(why)
        if "collector unreachable" in seen:
            break
        time.sleep(0.1)
    assert seen == ["waiting for the collector", "collector unreachable"], seen
    assert "handlers 1" in (decoder.notify.last("STATUS") or "")


def test_handler_is_pinned_to_the_configured_cpus(pipeline: Any) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    target = cpus[-1]
    pipeline.write_config({"handlers": {"stages": ["gray"], str(7): {"cpus": [target]}}})
    handler = pipeline.start("handler", "7")
    with open("/proc/{}/status".format(handler.pid)) as handle:
        status = handle.read()
    assert re.search(r"^Cpus_allowed_list:\s+{}$".format(target), status, re.M), status
    other = pipeline.start("handler", "8")
    with open("/proc/{}/status".format(other.pid)) as handle:
        assert "Cpus_allowed_list:\t{}\n".format(target) not in handle.read() or len(cpus) == 1


#: a plugin whose import holds the interpreter for 8 s, as the import of a big
#: C extension does (OpenCV's: 0.3 s here, over 5 s in an emulated VM)
HOLDS_THE_INTERPRETER = """
import ctypes, os
open(os.environ["VP_TEST_MARK"], "w").close()
ctypes.PyDLL(None).usleep(8000000)  # PyDLL: the call keeps the GIL
from vidpipe.stages import Stage

class Slow(Stage):
    name = "slow"

    def process(self, frame):
        pass
"""


def test_a_handler_stopped_while_preparing_ends_at_once(pipeline: Any, tmp_path: Path) -> None:
    """systemd kills a role that does not end within TimeoutStopSec=5 and calls the
    stop failed (CI's VM run did, on an upgrade): a SIGTERM that comes while the
    stages are being imported ends the handler at once, the kernel's way; once
    the handler works, SIGTERM is the clean exit with a goodbye (code 0)."""
    (tmp_path / "heavyimport.py").write_text(HOLDS_THE_INTERPRETER)
    pipeline.write_config({"cameras": {"cam0": cam()},
                           "handlers": {"stages": ["heavyimport:Slow"]}})
    mark = tmp_path / "importing"
    env = {"PYTHONPATH": os.pathsep.join([str(SRC), str(tmp_path)]), "VP_TEST_MARK": str(mark)}
    handler = pipeline.start("handler", "1", ready=False, env=env)
    handler.notify.wait_for("READY", 20)
    wait_until(mark.exists, 20, "the plugin's import to begin")
    time.sleep(0.3)
    sent = time.monotonic()
    handler.proc.send_signal(signal.SIGTERM)
    try:
        code = handler.proc.wait(6)
    except subprocess.TimeoutExpired:
        code = None
    took = time.monotonic() - sent
    assert code == -signal.SIGTERM and took < 2.0, (code, took, handler.output())

    # the same handler, prepared: the flag, a goodbye, exit code 0
    mark.unlink()
    pipeline.write_config({"cameras": {"cam0": cam()}, "handlers": {"stages": ["gray"]}})
    working = pipeline.start("handler", "1", env=env)
    assert working.stop(signal.SIGTERM, timeout=10) == 0, working.output()
    assert not mark.exists()
