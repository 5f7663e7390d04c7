"""The collector built and stepped in-process, fed over a real ZeroMQ socket
of the test: results put back in order, drops and gaps accounted, the end
of a stream seen, and a failing output costing only itself."""

import time
from pathlib import Path
from typing import Any, List, Optional, Tuple

import numpy as np
import pytest
import zmq

from conftest import need_module, wait_until
from vidpipe.link import wire
from vidpipe.collector import Collector
from vidpipe.config import config_from_dict
from vidpipe.link.ordering import Entry
from vidpipe.outputs import Output


class Recorder(Output):
    def __init__(self, fail_on: Optional[int] = None) -> None:
        self.got: List[Tuple[int, str, Optional[str]]] = []
        self.ended: List[str] = []
        self.fail_on = fail_on

    def emit(self, camera: str, entry: Entry, latency_ms: Optional[float]) -> None:
        if entry.seq == self.fail_on:
            raise RuntimeError("output bug on {}".format(entry.seq))
        self.got.append((entry.seq, entry.status, entry.reason or None))

    def end_of_stream(self, camera: str) -> None:
        self.ended.append(camera)


class Rig:
    def __init__(self, run: Path, ctx: zmq.Context, outputs: List[Output]) -> None:
        config = config_from_dict({
            "pipeline": {"runtime_dir": str(run), "max_latency_ms": 2000},
            "cameras": {"cam0": {"source": "testsrc"}},
            "collector": {"exit_on_eos": True, "reorder_window": 8},
        })
        self.collector = Collector(config, outputs=outputs)
        self.collector.start()
        self.push = ctx.socket(zmq.PUSH)
        self.push.connect(config.collector.connect)

    def close(self) -> None:
        self.collector.close()

    def result(self, seq: int) -> None:
        self.push.send_multipart(wire.result_parts(
            np.full((4, 4), seq, np.uint8), {"handler": "1"}, "cam0", 3, seq, time.time_ns()))

    def drop(self, seq: int, reason: str) -> None:
        self.push.send_multipart(wire.control_parts(wire.DROP, {"reason": reason}, "cam0", 3,
                                                    seq, time.time_ns()))

    def eos(self, total: int) -> None:
        self.push.send_multipart(wire.control_parts(wire.EOS, {"read": total}, "cam0", 3,
                                                    total))

    def run_until_done(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.collector.step():
            assert time.monotonic() < deadline, self.collector.status_text()


@pytest.fixture
def rig(short_tmp: Path, zmq_ctx: Any, closing: Any) -> Any:
    return lambda *outputs: closing(Rig(short_tmp, zmq_ctx, list(outputs)))


def test_results_are_released_in_order_with_drops_in_their_place(rig: Any) -> None:
    out = Recorder()
    r = rig(out)
    for seq in (2, 0, 3, 1):
        r.result(seq)
    r.drop(4, "no_capacity")
    r.result(5)
    r.eos(6)
    r.run_until_done()
    assert out.got == [(0, "ok", None), (1, "ok", None), (2, "ok", None), (3, "ok", None),
                       (4, "dropped", "no_capacity"), (5, "ok", None)]
    assert out.ended == ["cam0"]
    assert r.collector.finish() == 0
    summary = r.collector.summary()["cam0"]
    assert summary["processed"] == 5 and summary["dropped"] == {"no_capacity": 1}


def test_a_frame_that_never_comes_is_counted_missing_after_max_latency(rig: Any) -> None:
    out = Recorder()
    r = rig(out)
    r.result(0)
    r.result(2)  # 1 never arrives
    wait_until(lambda: r.collector.step() and len(out.got) == 3, 10, "the gap given up")
    assert out.got == [(0, "ok", None), (1, "missing", None), (2, "ok", None)]


def test_a_failing_output_costs_that_output_that_result(rig: Any) -> None:
    bad, good = Recorder(fail_on=1), Recorder()
    r = rig(bad, good)
    for seq in range(3):
        r.result(seq)
    r.eos(3)
    r.run_until_done()
    assert [g[0] for g in good.got] == [0, 1, 2]
    assert [g[0] for g in bad.got] == [0, 2]
    assert r.collector.output_errors.as_dict() == {"Recorder": 1}
    assert "output errors Recorder=1" in r.collector.status_text()


def test_garbage_is_counted_and_the_stream_goes_on(rig: Any) -> None:
    out = Recorder()
    r = rig(out)
    r.push.send_multipart([b"VPIPE but not really", b"{}"])
    r.push.send_multipart(wire.control_parts(wire.CREDIT, {}, "cam0", 3, 0))  # not for us
    r.result(0)
    r.eos(1)
    r.run_until_done()
    assert out.got == [(0, "ok", None)]
    bad = r.collector.bad.as_dict()
    assert bad.get("unexpected_kind") == 1 and sum(bad.values()) == 2


def test_a_broker_output_that_cannot_start_is_off_and_named(tmp_path: Path,
                                                            caplog: Any) -> None:
    """A credentials file that is not there, a recording directory that
    cannot be made: the collector runs without those outputs and the log
    names the key; the others still run, in the order configured."""
    need_module("pika")
    need_module("paho.mqtt.client")
    (tmp_path / "a-file").write_text("")
    config = config_from_dict({
        "pipeline": {"runtime_dir": str(tmp_path / "run")},
        "collector": {"outputs": ["log", "mqtt", "record", "amqp", "jsonl"],
                      "spool": {"dir": str(tmp_path / "spool")},
                      "amqp": {"credentials_file": str(tmp_path / "missing"), "port": 1},
                      "mqtt": {"port": 1}, "jsonl": {"path": str(tmp_path / "out.jsonl")},
                      "record": {"dir": str(tmp_path / "a-file" / "rec"), "formats": ["mp4"]}}})
    assert config.warnings == []
    collector = Collector(config)
    try:
        assert [o.name for o in collector.outputs] == ["log", "mqtt", "jsonl"]
        assert collector.recording is None
        text = caplog.text
        assert "output amqp is off" in text and "collector.amqp.credentials_file = " + \
            str(tmp_path / "missing") in text
        assert "output record is off" in text and "collector.record.dir = " + \
            str(tmp_path / "a-file" / "rec") in text
    finally:
        collector.close()


def test_made_up_camera_names_never_lock_out_the_configured_ones(short_tmp: Path) -> None:
    """Issue 24: 1,024 made-up camera names in RESULTs locked the configured
    cameras out (bad_camera) until a restart. A configured camera always has
    a place; unconfigured ones are bounded, and one silent long enough makes
    room for a new one, its results released first."""
    from vidpipe import collector as collector_module

    config = config_from_dict({"pipeline": {"runtime_dir": str(short_tmp)},
                               "cameras": {"cam0": {"source": "testsrc"}}})
    recorder = Recorder()
    coll = Collector(config, outputs=[recorder])
    try:
        def result(camera: str, seq: int, now: float) -> None:
            head = wire.Header(wire.RESULT, camera, 1, seq, 0)
            coll.on_message(wire.Message(head, {"handler": "1"}, None), now)

        for n in range(1024):
            result("fake{}".format(n), 0, 100.0)
        assert len(coll.cameras) == collector_module.MAX_UNKNOWN
        assert coll.bad["bad_camera"] == 1024 - collector_module.MAX_UNKNOWN
        result("cam0", 0, 101.0)  # the configured camera is always taken
        assert "cam0" in coll.cameras and coll.cameras["cam0"].order.processed == 1
        result("new", 0, 110.0)  # the others are not silent long enough yet
        assert "new" not in coll.cameras
        result("fake5", 1, 150.0)  # one that speaks is kept
        result("new", 0, 100.0 + collector_module.UNKNOWN_IDLE_S + 1)
        assert "new" in coll.cameras and "fake0" not in coll.cameras and "fake5" in coll.cameras
        assert recorder.ended == ["fake0"]  # the outputs forget it too (Output.forget)
        assert len(coll.cameras) == collector_module.MAX_UNKNOWN + 1
    finally:
        coll.close()
