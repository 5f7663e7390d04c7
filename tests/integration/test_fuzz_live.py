"""Hypothesis-generated messages sent over the real sockets of running roles:
to the collector's results socket, to a decoder's frame socket (as a fake
handler), to the handlers (from a fake decoder they discover) and to a tap
(as a subscriber). Nobody dies, the garbage is counted, and the real
camera's frames keep flowing.

The real camera is called "live"; generated messages name other cameras, so
that what they do to ordering (a hostile peer on the socket can confuse the
order of the cameras it names: ipc permissions and CurveZMQ keep it off)
stays out of the way of what is checked here."""

import json
from typing import Any

import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import fake_decoder, hostile_peers, wait_until
from fuzzing import messages

LIVE = settings(max_examples=250, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def board(pipeline: Any, name: str) -> Any:
    path = pipeline.runtime / "status" / (name + ".json")
    return json.loads(path.read_text()) if path.exists() else {}


def live_ok(pipeline: Any) -> int:
    return sum(1 for r in pipeline.results() if r["camera"] == "live" and r["status"] == "ok")


def test_generated_garbage_over_live_sockets_is_counted_and_harms_nobody(pipeline: Any,
                                                                         zmq_ctx: Any) -> None:
    pipeline.write_config({
        "pipeline": {"max_frame_bytes": 1 << 20},
        "cameras": {"live": {"source": "testsrc", "width": 160, "height": 120, "fps": 30,
                             "frames": 0, "wait_for_handlers": 2}},
        "handlers": {"stages": ["gray"]},
        "collector": {"outputs": ["jsonl"]},
    })
    roles = [pipeline.start("collector", "main"), pipeline.start("handler", "1"),
             pipeline.start("handler", "2"), pipeline.start("decoder", "live")]
    wait_until(lambda: live_ok(pipeline) > 10, 20, "frames from the live camera")

    ctx = zmq_ctx
    try:
        collector, decoder = hostile_peers(ctx, pipeline.runtime, "live")
        tap = ctx.socket(zmq.XSUB)
        tap.connect("ipc://{}/tap-live.sock".format(pipeline.runtime))
        # a decoder the handlers discover and trust
        fake, peers = fake_decoder(ctx, pipeline.runtime, "fuzz", 2)
        for sock in (collector, decoder, tap, fake):
            sock.setsockopt(zmq.SNDTIMEO, 2000)

        @LIVE
        @given(st.lists(messages(), max_size=3), st.lists(messages(), max_size=3),
               st.lists(messages(), max_size=2), st.lists(st.binary(max_size=40), max_size=2))
        def send(to_collector: Any, to_decoder: Any, to_handlers: Any, to_tap: Any) -> None:
            for parts in to_collector:
                collector.send_multipart(parts)
            for parts in to_decoder:
                decoder.send_multipart(parts)
            for parts in to_handlers:
                for peer in peers:
                    fake.send_multipart([peer] + parts)
            for data in to_tap:
                tap.send(data)
            while fake.poll(0):  # what the handlers answer (credits) is not read
                fake.recv_multipart()

        send()
    finally:
        # Gone before the flow is checked: a generated CREDIT can be valid, and a
        # peer that holds credits without answering looks like a slow handler to
        # the decoder (it keeps frames until the peer leaves). Only the
        # services' own user can connect to the decoder socket (0600); that
        # peer is inside the trust boundary.
        ctx.destroy(linger=0)
    before = live_ok(pipeline)
    wait_until(lambda: live_ok(pipeline) > before + 30, 20,
               "the live camera's frames to keep flowing after the garbage")

    for role in roles:
        assert role.proc.poll() is None, "{} {} died:\n{}".format(role.role, role.name,
                                                                 role.output()[-3000:])
        assert "Traceback" not in role.output(), role.output()[-3000:]
    counted = {name: sum((board(pipeline, name).get("malformed") or {}).values())
               for name in ("collector-main", "decoder-live", "handler-1", "handler-2")}
    assert all(count > 0 for count in counted.values()), counted
