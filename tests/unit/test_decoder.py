"""The decoder built and stepped in-process with an injected source, its
handlers and collector real ZeroMQ sockets of the test: what it sends, what
it drops and why, what a lost handler's frames become, with every dispatch
strategy."""

import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
import zmq

from conftest import wait_until
from helpers import Numbered
from vidpipe.link import wire
from vidpipe.config import config_from_dict
from vidpipe.decoder import Decoder


class Bench:
    """A decoder on ``Numbered`` frames, a collector's PULL and handlers' DEALERs."""

    def __init__(self, root: Path, dispatch: str, frames: int, transport: str = "inline",
                 pipeline: Any = None, **camera: Any) -> None:
        self.ctx = zmq.Context.instance()
        run = root / "run"
        run.mkdir(mode=0o750)
        config = config_from_dict({
            "pipeline": dict({"runtime_dir": str(run), "dispatch": dispatch,
                              "max_latency_ms": 60000}, **(pipeline or {})),
            "cameras": {"cam0": dict({"source": "testsrc", "transport": transport}, **camera)},
        })
        self.collector = self.ctx.socket(zmq.PULL)
        self.collector.bind(config.collector.connect)
        self.decoder = Decoder(config, "cam0", source=Numbered(config.camera("cam0"), count=frames))
        self.decoder.start()
        # notices are sent only over a connection that is up (immediate)
        wait_until(lambda: self.decoder.notices.poll(0, zmq.POLLOUT), 5, "collector link")
        self.handlers: List[zmq.Socket] = []

    def handler(self, name: str, window: int = 4) -> zmq.Socket:
        sock = self.ctx.socket(zmq.DEALER if self.decoder.out.credits else zmq.PULL)
        sock.connect(self.decoder.cam.bind)
        if self.decoder.out.credits:
            sock.send_multipart(wire.control_parts(wire.CREDIT, {"handler": name,
                                                                 "window": window}))
            wait_until(lambda: (self.decoder.out.wait(0.01) or
                                self.decoder.out.handlers() or 0) >= len(self.handlers) + 1,
                       5, "handler {} known".format(name))
        self.handlers.append(sock)
        return sock

    def steps(self, until: Any, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            assert time.monotonic() < deadline, "decoder did not get there"
            if not self.decoder.step():
                return

    def notices(self) -> Iterator[wire.Message]:
        while self.collector.poll(100):
            yield wire.decode(self.collector.recv_multipart(), 1 << 20)

    def close(self) -> None:
        self.decoder.close()
        for sock in self.handlers + [self.collector]:
            sock.close(linger=0)


@pytest.fixture
def bench(short_tmp: Path, closing: Any) -> Any:
    return lambda *args, **kw: closing(Bench(short_tmp, *args, **kw))


def frames_at(sock: zmq.Socket, routed: bool = True) -> List[int]:
    seqs = []
    while sock.poll(100):
        msg = wire.decode(sock.recv_multipart(), 1 << 20)
        assert msg.header.kind == wire.FRAME
        seqs.append(msg.header.seq)
        assert msg.image()[0, 0] == msg.header.seq  # the pixels that frame had
    return seqs


def test_balanced_spreads_frames_by_credit_and_drops_what_no_one_can_take(bench: Any) -> None:
    b = bench("balanced", 10)
    one, two = b.handler("1", window=2), b.handler("2", window=2)
    b.steps(lambda: b.decoder.read == 10)
    got1, got2 = frames_at(one), frames_at(two)
    assert sorted(got1 + got2) == [0, 1, 2, 3] and len(got1) == len(got2) == 2
    # no credit came back: the other 6 are dropped, each told to the collector
    assert b.decoder.dropped.as_dict() == {"no_capacity": 6}
    drops = [m for m in b.notices() if m.header.kind == wire.DROP]
    assert [m.header.seq for m in drops] == list(range(4, 10))
    assert {m.meta["reason"] for m in drops} == {"no_capacity"}


def test_a_returned_credit_frees_the_handler_for_the_next_frame(bench: Any) -> None:
    b = bench("balanced", 5)
    one = b.handler("1", window=1)
    for seq in range(5):
        b.steps(lambda: b.decoder.read == seq + 1)
        assert frames_at(one) == [seq]
        one.send_multipart(wire.control_parts(wire.CREDIT, {"handler": "1", "window": 1},
                                              stream=b.decoder.stream, seq=seq))
        wait_until(lambda: (b.decoder.out.wait(0.01) or b.decoder.out.in_flight()) == 0, 5,
                   "credit for {}".format(seq))
    assert b.decoder.sent == 5 and not b.decoder.dropped


def test_by_camera_keeps_one_handler(bench: Any) -> None:
    b = bench("by-camera", 6)
    one, two = b.handler("1", window=8), b.handler("2", window=8)
    b.steps(lambda: b.decoder.read == 6)
    assert sorted([frames_at(one), frames_at(two)]) == [[], [0, 1, 2, 3, 4, 5]]


def test_round_robin_pushes_without_knowing_handlers(bench: Any) -> None:
    b = bench("round-robin", 4)
    one = b.handler("1")
    time.sleep(0.2)  # the PULL's connection is up
    b.steps(lambda: b.decoder.read == 4)
    assert b.decoder.out.handlers() is None and b.decoder.out.in_flight() == 0
    got = frames_at(one)
    assert got == sorted(got) and b.decoder.sent + sum(b.decoder.dropped.as_dict().values()) == 4
    assert "handlers ?" in b.decoder.status_text()


def test_a_handler_that_says_bye_hands_its_frames_to_another(bench: Any) -> None:
    b = bench("balanced", 3)
    one = b.handler("1", window=3)
    b.steps(lambda: b.decoder.read == 3)
    assert frames_at(one) == [0, 1, 2]
    two = b.handler("2", window=3)
    one.send_multipart(wire.control_parts(wire.BYE, {"handler": "1"}))
    wait_until(lambda: (b.decoder.out.wait(0.01) or b.decoder.redispatched) == 3, 5,
               "re-dispatch")
    assert frames_at(two) == [0, 1, 2]
    assert b.decoder.out.handlers() == 1 and b.decoder.sent == 3


def test_the_end_of_the_source_ends_the_loop_with_totals_for_the_collector(
        bench: Any) -> None:
    b = bench("balanced", 2, wait_for_handlers=0)
    b.steps(lambda: False)  # runs until step() says the source ended
    assert b.decoder.ended and b.decoder.dropped.as_dict() == {"no_handler": 2}
    assert b.decoder.finish() == 0
    kinds = [(m.header.kind, m.header.seq) for m in b.notices()]
    assert kinds == [(wire.DROP, 0), (wire.DROP, 1), (wire.EOS, 2)]


def test_shared_memory_frames_free_their_slot_when_the_credit_returns(bench: Any) -> None:
    b = bench("balanced", 6, transport="shm", shm_slots=2)
    one = b.handler("1", window=8)
    b.steps(lambda: b.decoder.read == 6)
    # two slots: frames 0 and 1 went out, the rest found no slot
    assert b.decoder.sent == 2 and b.decoder.dropped.as_dict() == {"no_slot": 4}
    refs: Dict[int, Any] = {}
    while one.poll(100):
        msg = wire.decode(one.recv_multipart(), 1 << 20)
        assert msg.header.encoding == wire.SHM
        refs[msg.header.seq] = msg
    assert sorted(refs) == [0, 1]
    one.send_multipart(wire.control_parts(wire.CREDIT, {"handler": "1", "window": 8},
                                          stream=b.decoder.stream, seq=0))
    wait_until(lambda: (b.decoder.out.wait(0.01) or b.decoder.out.in_flight()) == 1, 5,
               "credit")
    assert b.decoder.framer.ring is not None and b.decoder.framer.ring.acquire() is not None


def test_a_decoder_held_up_hears_waiting_heartbeats_before_calling_handlers_dead(
        bench: Any, caplog: Any) -> None:
    """The decoder's loop blocked longer than handler_timeout_ms (as in a slow
    camera open): a handler whose heartbeats wait unread is alive; one that
    sent nothing is lost."""
    b = bench("balanced", 1000, pipeline={"handler_timeout_ms": 400})
    alive, _silent = b.handler("1", window=2), b.handler("2", window=2)
    held_up = time.monotonic()
    while time.monotonic() - held_up < 1.2:  # the decoder is not stepped meanwhile
        time.sleep(0.2)
        alive.send_multipart(wire.control_parts(wire.CREDIT, {"handler": "1", "window": 2}))
    with caplog.at_level(logging.INFO, logger="vidpipe"):
        b.decoder.step()
    lost = [r.getMessage() for r in caplog.records if "presumed dead" in r.getMessage()]
    assert lost == ["cam0: handler 2 went silent (presumed dead); 0 frame(s) in flight"]
    assert not [r for r in caplog.records if "joined" in r.getMessage()]  # 1 never left
    assert sorted(p.name for p in b.decoder.out.balancer.peers.values()) == ["1"]


def slow_handler(ctx: zmq.Context, endpoint: str, frames: int, stream: List[int],
                 got: List[int]) -> None:
    """A handler with two credits that takes 5 ms a frame (in a thread)."""
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    sock.send_multipart(wire.control_parts(wire.CREDIT, {"handler": "1", "window": 2}))
    try:
        while len(got) < frames and sock.poll(5000):
            msg = wire.decode(sock.recv_multipart(), 1 << 20)
            got.append(msg.header.seq)
            time.sleep(0.005)
            sock.send_multipart(wire.control_parts(wire.CREDIT, {"handler": "1", "window": 2},
                                                   stream=stream[0], seq=msg.header.seq))
    finally:
        sock.close(linger=0)


@pytest.mark.parametrize("transport", ["inline", "shm"])
def test_a_burst_of_early_frames_waits_for_room_instead_of_being_dropped(
        bench: Any, transport: str) -> None:
    """A camera's frames all at once (FFmpeg's buffered start-up burst): each
    waits for the handler's credit (and, in shared memory, a slot) until its
    time instead of being dropped; 30 frames, none lost."""
    b = bench("balanced", 30, transport=transport, shm_slots=2, fps=30)
    b.decoder.source.live = True
    got: List[int] = []
    worker = threading.Thread(target=slow_handler, args=(
        b.ctx, b.decoder.cam.bind, 30, [b.decoder.stream], got))
    worker.start()
    wait_until(lambda: (b.decoder.out.wait(0.01) or b.decoder.out.handlers() or 0) >= 1, 5,
               "handler known")
    b.steps(lambda: b.decoder.read == 30)
    worker.join(10)
    assert not b.decoder.dropped, b.decoder.dropped.as_dict()
    assert got == list(range(30))
