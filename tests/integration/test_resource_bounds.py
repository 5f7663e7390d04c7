"""A flood of connections: the roles keep working, with bounded memory and
file descriptors, and give the descriptors back when the flood ends."""

import os
import socket
import time
from typing import Any, List

from helpers import accounted, camera, rss_kb, wait_exit


def fds(pid: int) -> int:
    return len(os.listdir("/proc/{}/fd".format(pid)))


def test_a_connection_flood_does_not_stop_the_pipeline(pipeline: Any) -> None:
    pipeline.write_config({
        "cameras": {"cam0": camera(600, width=320, height=240, fps=30, wait=1,
                                   bind="tcp://127.0.0.1:5781")},
        "handlers": {"stages": ["gray"]},
        "collector": {"bind": "tcp://127.0.0.1:5782", "exit_on_eos": True},
    })
    collector = pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    decoder = pipeline.start("decoder", "cam0")
    time.sleep(1.5)
    before = {role.pid: (fds(role.pid), rss_kb(role.pid)) for role in (decoder, collector)}
    flood: List[socket.socket] = []
    try:
        # 600 idle TCP connections, some sending garbage instead of a ZMTP greeting
        for n in range(600):
            sock = socket.create_connection(("127.0.0.1", 5781 if n % 2 else 5782))
            if n % 3 == 0:
                sock.sendall(os.urandom(64))
            flood.append(sock)
        time.sleep(2)
        during = {pid: (fds(pid), rss_kb(pid)) for pid in before}
    finally:
        for sock in flood:
            sock.close()
    time.sleep(2)
    after = {pid: fds(pid) for pid in before}
    assert wait_exit(decoder, 40, pipeline) == 0
    assert wait_exit(collector, 30, pipeline) == 0

    for pid, (fd_before, rss_before) in before.items():
        fd_during, rss_during = during[pid]
        assert fd_during > fd_before + 100, (fd_before, fd_during)  # the flood got there
        assert after[pid] <= fd_before + 5, (fd_before, after[pid])  # and was given back
        assert rss_during < rss_before + 64 * 1024, (rss_before, rss_during)  # < 64 MB more
    acc = accounted(pipeline.results(), "cam0")
    assert sorted(acc) == list(range(600)), pipeline.logs()
    ok = [r for r in acc.values() if r["status"] == "ok"]
    assert len(ok) >= 590, pipeline.logs()  # the flood did not stop the frames
    log = decoder.output() + collector.output()
    assert "Traceback" not in log, log
