"""The handler built and stepped in-process: a decoder and a collector stand
in as real ZeroMQ sockets of the test. Every frame it is given ends as a
RESULT or a DROP at the collector and as a credit back at the decoder,
whatever the frame or the stage does."""

import time
from pathlib import Path
from typing import Any, Iterator, List

import numpy as np
import pytest
import zmq

from conftest import wait_until
from vidpipe.link import wire
from vidpipe.config import config_from_dict
from vidpipe.handler import Handler
from vidpipe.link.payload import ResultReader
from vidpipe.stages import Frame, Stage


class Boom(Stage):
    """Fails on odd frames (a plugin's bug)."""

    name = "boom"

    def process(self, frame: Frame) -> None:
        if frame.seq % 2:
            raise RuntimeError("boom on {}".format(frame.seq))
        frame.meta["boom"] = "fine"


class Rig:
    def __init__(self, run: Path, ctx: zmq.Context, stages: List[str]) -> None:
        config = config_from_dict({
            "pipeline": {"runtime_dir": str(run), "max_latency_ms": 5000},
            "cameras": {"cam0": {"source": "testsrc"}},
            "handlers": {"stages": stages, "prefetch": 4},
        })
        self.decoder = ctx.socket(zmq.ROUTER)
        self.decoder.bind(config.camera("cam0").bind)
        self.collector = ctx.socket(zmq.PULL)
        self.collector.bind(config.collector.bind)
        self.handler = Handler(config, "1")
        self.handler.start()
        wait_until(lambda: self.handler.step() and self.handler.joined, 60, "stages ready")
        self.identity = self.hello()

    def close(self) -> None:
        self.handler.close()

    def hello(self) -> bytes:
        """The handler's announcement (CREDIT, no seq) at the decoder."""
        wait_until(lambda: self.decoder.poll(0), 10, "the handler's first credit")
        identity, *parts = self.decoder.recv_multipart()
        msg = wire.decode(parts)
        assert msg.header.kind == wire.CREDIT and msg.header.seq == wire.NO_SEQ
        assert msg.meta == {"handler": "1", "window": 4, "serving": []}
        return identity

    def frame(self, seq: int, age_s: float = 0.0, value: int = 0) -> None:
        image = np.full((24, 32, 3), value, np.uint8)
        capture = time.time_ns() - int(age_s * 1e9)
        self.decoder.send_multipart([self.identity] + wire.frame_parts(
            image, "cam0", 9, seq, capture))

    def credits(self) -> List[int]:
        got = []
        while self.decoder.poll(200):
            msg = wire.decode(self.decoder.recv_multipart()[1:])
            if msg.header.kind == wire.CREDIT and msg.header.seq != wire.NO_SEQ:
                got.append(msg.header.seq)
        return got

    def at_collector(self, count: int) -> Iterator[wire.Message]:
        for _ in range(count):
            wait_until(lambda: self.handler.step() and self.collector.poll(0), 10,
                       "a message at the collector")
            yield wire.decode(self.collector.recv_multipart())


@pytest.fixture
def rig(short_tmp: Path, zmq_ctx: Any, closing: Any) -> Any:
    return lambda stages: closing(Rig(short_tmp, zmq_ctx, stages))


def test_a_frame_becomes_a_result_and_a_credit(rig: Any) -> None:
    r = rig(["gray"])
    r.frame(0, value=200)
    (msg,) = r.at_collector(1)
    assert msg.header.kind == wire.RESULT and msg.header.seq == 0
    assert msg.header.encoding == wire.SHM  # the collector is on this host: via the ring
    reader = ResultReader(r.handler.config.pipeline.runtime_dir, "test")
    assert reader.open(msg) is not None
    assert msg.image().shape == (24, 32) and (msg.image() == 200).all()
    assert msg.meta["handler"] == "1" and set(msg.meta["timings_ms"]) == {"gray", "receive"}
    assert r.credits() == [0]
    assert r.handler.processed == 1 and r.handler.per_camera["cam0"] == 1


def test_a_stale_frame_is_dropped_and_its_credit_returned(rig: Any) -> None:
    r = rig(["gray"])
    r.frame(0, age_s=10)  # older than max_latency_ms
    (msg,) = r.at_collector(1)
    assert msg.header.kind == wire.DROP and msg.meta == {"reason": "stale", "handler": "1"}
    assert r.credits() == [0]
    assert r.handler.dropped.as_dict() == {"stale": 1}


def test_a_failing_stage_costs_its_frame_only(rig: Any) -> None:
    r = rig(["test_handler:Boom"])
    for seq in range(4):
        r.frame(seq)
    msgs = list(r.at_collector(4))
    kinds = {m.header.seq: (m.header.kind, m.meta.get("reason")) for m in msgs}
    assert kinds == {0: (wire.RESULT, None), 1: (wire.DROP, "stage_error"),
                     2: (wire.RESULT, None), 3: (wire.DROP, "stage_error")}
    assert sorted(r.credits()) == [0, 1, 2, 3]
    assert r.handler.bad.as_dict() == {"stage_error:boom": 2}
    assert "malformed stage_error:boom=2" in r.handler.status_text()


def test_garbage_from_a_decoder_is_counted_and_answered_with_nothing(rig: Any) -> None:
    r = rig(["gray"])
    r.decoder.send_multipart([r.identity, b"garbage", b"{}"])
    r.frame(1)
    (msg,) = r.at_collector(1)
    assert msg.header.seq == 1 and msg.header.kind == wire.RESULT
    assert sum(r.handler.bad.as_dict().values()) == 1
    assert r.credits() == [1]


def test_a_stopping_handler_says_bye(rig: Any) -> None:
    r = rig(["gray"])
    r.handler.close()
    kinds = []
    while r.decoder.poll(1000):
        msg = wire.decode(r.decoder.recv_multipart()[1:])
        kinds.append(msg.header.kind)
        if msg.header.kind == wire.BYE:
            assert msg.meta == {"handler": "1"}
            break
    assert kinds[-1:] == [wire.BYE], kinds  # (heartbeat credits may come first)


def test_a_decoder_socket_of_another_user_is_not_joined(rig: Any, short_tmp: Path) -> None:
    import os
    import socket

    r = rig(["gray"])
    foreign = short_tmp / "decoder-evil.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(foreign))
    try:
        os.chown(str(foreign), 65534, 65534)
    except PermissionError:
        pytest.skip("needs root to make a socket of another user")
    r.handler.decoders.discover()
    assert "ipc://{}".format(foreign) not in r.handler.decoders.inputs
    assert str(foreign) in r.handler.decoders.refused
    sock.close()
