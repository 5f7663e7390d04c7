"""Same-host frames through the shared-memory ring, with real processes."""

import os
import signal
import time
from typing import Any

import numpy as np
import zmq

from vidpipe.link import encodings, wire
from vidpipe.config import config_from_dict
from vidpipe.handler import Handler
from vidpipe.link.ring import RingWriter
from vidpipe.stages import Frame, Stage


def rings(pipeline: Any) -> list:
    return sorted(p for p in os.listdir(str(pipeline.runtime)) if p.endswith(".ring"))


def test_decoder_uses_the_ring_and_cleans_up_after_sigkill(pipeline: Any) -> None:
    pipeline.write_config({"cameras": {"cam0": {"source": "testsrc", "fps": 30}},
                           "handlers": {"stages": ["gray"]}})
    decoder = pipeline.start("decoder", "cam0")
    deadline = time.monotonic() + 10
    while not rings(pipeline) and time.monotonic() < deadline:
        time.sleep(0.1)
    first = rings(pipeline)
    assert len(first) == 1 and first[0].startswith("cam0-"), first
    assert "shared memory (8 slots)" in decoder.output()
    decoder.proc.send_signal(signal.SIGKILL)
    decoder.proc.wait(5)
    assert rings(pipeline) == first  # a crash leaves it behind ...
    again = pipeline.start("decoder", "cam0")
    deadline = time.monotonic() + 10
    while rings(pipeline) in ([], first) and time.monotonic() < deadline:
        time.sleep(0.1)
    second = rings(pipeline)
    assert len(second) == 1 and second != first  # ... and the next run removes it
    assert again.stop() == 0
    assert rings(pipeline) == []  # a clean stop leaves nothing


def test_inline_lz4_and_jpeg_links_deliver_frames(pipeline: Any) -> None:
    from conftest import free_port
    from helpers import accounted, load_drops_only

    # a port of its own: the floor suites run this test at the same time
    pipeline.write_config({
        "cameras": {
            "lz": {"source": "testsrc", "width": 320, "height": 240, "frames": 60,
                   "wait_for_handlers": 1, "bind": "tcp://127.0.0.1:{}".format(free_port()),
                   "encoding": "lz4"},
            "jp": {"source": "testsrc", "width": 320, "height": 240, "frames": 60,
                   "wait_for_handlers": 1, "transport": "inline", "encoding": "jpeg"},
        },
        "handlers": {"stages": ["gray"], "prefetch": 2},
        "collector": {"exit_on_eos": True},
    })
    collector = pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    lz = pipeline.start("decoder", "lz")
    jp = pipeline.start("decoder", "jp")
    assert collector.proc.wait(40) == 0, pipeline.logs()
    assert "inline lz4" in lz.output() and "inline jpeg" in jp.output()
    from vidpipe.capture.sources import render_testsrc
    import cv2
    import hashlib

    records = pipeline.results()
    for cam in ("lz", "jp"):
        by_seq = accounted(records, cam)
        assert sorted(by_seq) == list(range(60)), (cam, sorted(by_seq))
        assert load_drops_only(by_seq) == [], cam  # a loaded box may drop some, for load only
        ok = [r for r in by_seq.values() if r["status"] == "ok"]
        assert len(ok) >= 30, (cam, len(ok))
    lossless = [r for r in records if r["camera"] == "lz" and r["status"] == "ok"]
    for rec in lossless:  # LZ4 is lossless: the exact gray frame
        gray = cv2.cvtColor(render_testsrc(rec["seq"], 320, 240), cv2.COLOR_BGR2GRAY)
        assert rec["sha1"] == hashlib.sha1(gray.tobytes()).hexdigest()


class Rewriter(Stage):
    """Simulates a decoder that hands the slot on while the handler still uses it."""

    name = "rewriter"
    ring: Any = None

    def process(self, frame: Frame) -> None:
        ring = Rewriter.ring
        ring.release(frame.seq)
        slot = ring.acquire()
        ring.commit(slot, frame.seq + 100, frame.image.nbytes)
        frame.image = frame.image[:, :, 0]


def test_handler_drops_a_frame_whose_slot_was_rewritten(short_tmp: Any, zmq_ctx: Any) -> None:
    config = config_from_dict({"pipeline": {"runtime_dir": str(short_tmp)},
                               "handlers": {"stages": ["gray"]}})
    handler = Handler(config, "1")
    handler.chain = [Rewriter({})]
    ring = RingWriter(str(short_tmp), "cam0", 5, slots=1, slot_size=48 * 64 * 3)
    Rewriter.ring = ring
    ctx = zmq_ctx
    sink = ctx.socket(zmq.PULL)
    sink.bind(config.collector.bind)
    handler.results.connect(config.collector.connect)
    back = ctx.socket(zmq.DEALER)
    try:
        # results are sent without waiting (ZMQ_IMMEDIATE): let the connection come up
        assert handler.results.poll(5000, zmq.POLLOUT), "no connection to the collector socket"
        slot = ring.acquire()
        image = np.full((48, 64, 3), 7, np.uint8)
        ring.array(slot, image.shape)[:] = image
        ring.commit(slot, 3, image.nbytes)
        ring.hold(3, slot)
        parts = wire.frame_parts(image, "cam0", 5, 3, time.time_ns(), encoding=wire.SHM,
                                 payload=encodings.shm_ref(ring.name, slot))
        handler.decode(back, parts, time.perf_counter())  # the full decode
        assert handler.dropped == {"torn": 1}
        assert handler.processed == 0
        assert sink.poll(5000), "no drop notice reached the collector socket"
        notice = wire.decode(sink.recv_multipart())
        assert notice.header.kind == wire.DROP and notice.meta["reason"] == "torn"
        # the next frame in that slot takes the short path, and is checked the same
        ring.give_back(slot)  # the rewriter took it without holding it
        assert ring.acquire() == slot
        ring.commit(slot, 4, image.nbytes)
        ring.hold(4, slot)
        parts = wire.frame_parts(image, "cam0", 5, 4, time.time_ns(), encoding=wire.SHM,
                                 payload=encodings.shm_ref(ring.name, slot))
        known = handler.frames.known(parts)
        assert known is not None and known[0].seq == 4
        handler.handle(back, *known, time.perf_counter())
        assert handler.dropped == {"torn": 2} and handler.processed == 0
    finally:
        handler.sockets.close()  # an open socket would block its context's term() forever
        ctx.destroy(linger=0)
        ring.close()
