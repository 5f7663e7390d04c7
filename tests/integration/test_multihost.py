"""Handlers on another host: two network namespaces joined by a veth pair.

Host A runs the decoder and the collector, host B a handler; they know each
other only by the addresses in pipeline.toml. The link is taken down and up
again; the pipeline recovers without any process being restarted. Needs root
(CI runs as root); the addresses exist only inside the namespaces made here.
"""

import os
import subprocess
import time
import uuid
from typing import Any, Dict, Iterator, List

import pytest

from conftest import wait_until
from helpers import accounted, camera, load_drops_only, wait_exit

A_IP, B_IP = "10.231.77.1", "10.231.77.2"


def sh(*cmd: str) -> None:
    result = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    assert result.returncode == 0, "{}: {}".format(" ".join(cmd), result.stdout)


@pytest.fixture
def hosts() -> Iterator[Dict[str, List[str]]]:
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the multi-host test needs root (ip netns); CI runs as root")
        pytest.skip("needs root for network namespaces")
    tag = uuid.uuid4().hex[:6]
    a, b = "vpa-" + tag, "vpb-" + tag
    va, vb = "vpa" + tag, "vpb" + tag
    sh("ip", "netns", "add", a)
    sh("ip", "netns", "add", b)
    try:
        sh("ip", "link", "add", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b)
        for ns, dev, ip in ((a, va, A_IP), (b, vb, B_IP)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        yield {"A": ["ip", "netns", "exec", a], "B": ["ip", "netns", "exec", b],
               "link_b": ["ip", "-n", b, "link", "set", vb]}
    finally:
        subprocess.run(["ip", "netns", "del", a])
        subprocess.run(["ip", "netns", "del", b])


def test_a_handler_on_another_host_survives_its_link_going_down(pipeline: Any,
                                                                hosts: Any) -> None:
    frames = 400  # 20 s at 20 fps
    pipeline.write_config({
        "pipeline": {"heartbeat_ms": 200, "handler_timeout_ms": 1000, "max_latency_ms": 1000},
        "cameras": {"cam0": camera(frames, width=320, height=240, fps=20, wait=1,
                                   bind="tcp://{}:5701".format(A_IP))},
        "handlers": {"stages": ["gray"]},
        "collector": {"bind": "tcp://{}:5702".format(A_IP), "exit_on_eos": True},
    })
    collector = pipeline.start("collector", "main", prefix=hosts["A"])
    handler = pipeline.start("handler", "1", prefix=hosts["B"])
    decoder = pipeline.start("decoder", "cam0", prefix=hosts["A"])
    time.sleep(6)
    sh(*hosts["link_b"], "down")
    time.sleep(4)
    sh(*hosts["link_b"], "up")
    assert wait_exit(decoder, 60, pipeline) == 0
    assert wait_exit(collector, 30, pipeline) == 0
    assert handler.proc.poll() is None, pipeline.logs()  # never restarted

    records = [r for r in pipeline.results() if r["camera"] == "cam0"]
    ok = sorted(r["seq"] for r in records if r["status"] == "ok" and not r.get("late"))
    assert ok and ok[0] < 60, pipeline.logs()  # frames crossed from the start
    assert len([s for s in ok if s >= frames - 100]) >= 90, pipeline.logs()  # and again after
    assert ok[-1] >= frames - 5
    # the outage cost frames, each of them accounted for by a record
    total = sum(r.get("count", 1) if r["status"] == "missing" else 1 for r in records
                if not r.get("late"))
    assert total == frames, pipeline.logs()
    assert len(ok) < frames - 40  # the link really was down for ~4 s


def test_with_curve_only_the_host_with_an_admitted_key_gets_frames(pipeline: Any,
                                                                   hosts: Any) -> None:
    from conftest import Role  # noqa: F811
    from test_curve import keys
    from vidpipe.tools.tomlwrite import dump_toml

    keydir = keys(pipeline.root / "keys")  # server, client (admitted), rogue
    site: Dict[str, Any] = {
        "pipeline": {"heartbeat_ms": 200},
        "cameras": {"cam0": camera(200, width=320, height=240, fps=20, wait=1,
                                   bind="tcp://{}:5711".format(A_IP))},
        "handlers": {"stages": ["gray"]},
        "collector": {"bind": "tcp://{}:5712".format(A_IP), "exit_on_eos": True},
        "security": {"curve": True, "keys_dir": str(keydir)},
    }
    pipeline.write_config(site)
    rogue_site = dict(site, security=dict(site["security"], client_key="rogue"),
                      pipeline=dict(site["pipeline"],
                                    runtime_dir=str(pipeline.root / "rogue-run")),
                      collector=dict(site["collector"], outputs=["log"]))
    rogue_config = pipeline.root / "rogue.toml"
    rogue_config.write_text(dump_toml(rogue_site))

    collector = pipeline.start("collector", "main", prefix=hosts["A"])
    rogue = Role(pipeline.root, rogue_config, "handler", "9", prefix=hosts["B"])
    pipeline.roles.append(rogue)
    rogue.ready()
    # the rogue's results cannot reach the collector (its key is refused), so it
    # asks the decoders for frames only after waiting 10 s for that link: the
    # camera starts once it does, so its refusal is there to be logged
    wait_until(lambda: "connected to decoder" in rogue.output(), 20, "the rogue joining")
    pipeline.start("handler", "1", prefix=hosts["B"])
    decoder = pipeline.start("decoder", "cam0", prefix=hosts["A"])
    assert wait_exit(decoder, 60, pipeline) == 0
    assert wait_exit(collector, 30, pipeline) == 0

    acc = accounted(pipeline.results(), "cam0")
    assert sorted(acc) == list(range(200)), pipeline.logs()
    ok = [r for r in acc.values() if r["status"] == "ok" and not r.get("late")]
    assert len(ok) >= 150 and {r["meta"]["handler"] for r in ok} == {"1"}, pipeline.logs()
    assert load_drops_only(acc) == [], load_drops_only(acc)
    log = decoder.output()
    assert "handler 9 joined" not in log and "refused a Curve client" in log, log
