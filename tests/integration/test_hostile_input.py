"""Garbage sent to every bound socket (and to handlers, through a fake
decoder) is counted by reason; no process dies and the pipeline goes on."""

import json
import re
import struct
import time
from typing import Any, Dict, List


from conftest import fake_decoder, hostile_peers
from vidpipe.link import wire

GOOD_HEADER = wire.Header(kind=wire.RESULT, camera="cam0", stream=1, seq=0).pack()


def with_version(version: int) -> bytes:
    return wire.HEADER.pack(wire.MAGIC, version, wire.RESULT, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0,
                            b"cam0")


def with_kind(kind: int) -> bytes:
    return wire.HEADER.pack(wire.MAGIC, 1, kind, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, b"cam0")


def lying_result() -> List[bytes]:
    head = wire.Header(kind=wire.RESULT, camera="cam0", stream=1, seq=0, width=10, height=10,
                       channels=1, dtype=1, payload_len=100, flags=wire.FLAG_IMAGE).pack()
    return [head, b"{}", b"x" * 7]


# (message parts, the reason the receiver must count)
COLLECTOR_GARBAGE = [
    ([b""], "bad_header"),
    ([b"\x00" * 40], "bad_header"),
    ([b"JUNK" + GOOD_HEADER[4:], b"{}", b""], "bad_magic"),
    ([with_version(99), b"{}", b""], "bad_version"),
    ([with_kind(200), b"{}"], "bad_kind"),
    ([GOOD_HEADER, b"{}"], "bad_parts"),
    ([GOOD_HEADER, b"{not json", b""], "bad_meta"),
    ([wire.Header(kind=wire.DROP, camera="cam0", stream=1, seq=0).pack(), b"[1,2]"], "bad_meta"),
    (lying_result(), "bad_length"),
]
DECODER_GARBAGE = [
    ([b"\xff" * 84], "bad_magic"),
    ([b"short"], "bad_header"),
    (wire.control_parts(wire.CREDIT, {"handler": "evil", "window": 10 ** 6}), "bad_credit"),
    (wire.control_parts(wire.EOS, {}), "unexpected_kind"),
]
HANDLER_GARBAGE = [
    ([wire.Header(kind=wire.FRAME, camera="cam0", stream=9, seq=0, width=640, height=480,
                  channels=3, dtype=1, payload_len=640 * 480 * 3).pack(), b"tiny"], "bad_length"),
    ([wire.Header(kind=wire.FRAME, camera="cam0", stream=9, seq=0, width=0, height=480,
                  channels=3, dtype=1, payload_len=0).pack(), b""], "bad_shape"),
    ([wire.Header(kind=wire.FRAME, camera="cam0", stream=9, seq=0, width=2, height=2,
                  channels=1, dtype=77, payload_len=4).pack(), b"abcd"], "bad_dtype"),
    (wire.control_parts(wire.CREDIT, {}), "unexpected_kind"),
]


def expected(garbage: List[Any]) -> Dict[str, int]:
    out: Dict[str, int] = {}
    for _parts, reason in garbage:
        out[reason] = out.get(reason, 0) + 1
    return out


def malformed(status: str) -> Dict[str, int]:
    match = re.search(r"malformed ((?:\w+=\d+ ?)+)", status)
    if not match:
        return {}
    return {k: int(v) for k, v in (item.split("=") for item in match.group(1).split())}


def wait_status(role: Any, want: Dict[str, int], timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = role.notify.last("STATUS") or ""
        if malformed(status) == want:
            return status
        time.sleep(0.1)
    raise AssertionError("{} {}: wanted malformed {}, status is {!r}".format(
        role.role, role.name, want, status))


def test_garbage_everywhere_is_counted_and_the_pipeline_goes_on(pipeline: Any,
                                                             zmq_ctx: Any) -> None:
    pipeline.write_config({
        "pipeline": {"max_frame_bytes": 2 * 1024 * 1024},
        "cameras": {"cam0": {"source": "testsrc", "frames": 240, "wait_for_handlers": 2}},
        "handlers": {"stages": ["gray"], "prefetch": 2},
        "collector": {"exit_on_eos": True},
    })
    collector = pipeline.start("collector", "main")
    handlers = [pipeline.start("handler", str(n)) for n in (1, 2)]
    decoder = pipeline.start("decoder", "cam0")

    ctx = zmq_ctx
    try:
        to_collector, to_decoder = hostile_peers(ctx, pipeline.runtime, "cam0")
        # a fake decoder in the runtime directory: the handlers find it and connect
        fake, peers = fake_decoder(ctx, pipeline.runtime, "evil", 2)
        time.sleep(0.5)

        for parts, _reason in COLLECTOR_GARBAGE:
            to_collector.send_multipart(parts)
        for parts, _reason in DECODER_GARBAGE:
            to_decoder.send_multipart(parts)
        for peer in peers:
            for parts, _reason in HANDLER_GARBAGE:
                fake.send_multipart([peer] + list(parts))
        # bigger than max_frame_bytes: libzmq refuses it before it is read
        to_collector.send_multipart([GOOD_HEADER, b"{}", b"\0" * (3 * 1024 * 1024)])

        wait_status(collector, expected(COLLECTOR_GARBAGE))
        wait_status(decoder, expected(DECODER_GARBAGE))
        for handler in handlers:
            wait_status(handler, expected(HANDLER_GARBAGE))
        assert collector.proc.wait(40) == 0, pipeline.logs()
    finally:
        ctx.destroy(linger=0)

    for role in [decoder] + handlers:
        assert role.proc.poll() in (None, 0), role.output()
    records = pipeline.results()
    cam0 = {r["seq"]: r for r in records if r["camera"] == "cam0" and r["status"] != "missing"}
    assert sorted(cam0) == list(range(240)), pipeline.logs()
    ok = [r for r in cam0.values() if r["status"] == "ok"]
    assert len(ok) >= 230
    # the collector said what it dropped, by reason, in its journal line too
    assert "bad_magic=1" in collector.output()


def test_header_layout_is_the_documented_one() -> None:
    # 4s B B H Q Q q I I H B B Q 32s, little endian, 84 bytes
    assert wire.HEADER_SIZE == 84
    raw = wire.Header(kind=wire.FRAME, camera="cam7", stream=5, seq=6, capture_ns=7, width=8,
                      height=9, channels=3, dtype=1, payload_len=216).pack()
    assert raw[:4] == b"VPIP" and raw[4] == wire.WIRE_VERSION and raw[5] == wire.FRAME
    assert struct.unpack_from("<Q", raw, 8)[0] == 5
    assert raw[-32:].rstrip(b"\0") == b"cam7"
    json.dumps(wire.decode([raw, b"\0" * 216]).meta)
