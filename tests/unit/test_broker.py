"""What the broker outputs share (vidpipe.outputs.broker): the spooled message
format, records this version cannot read, snapshots under their size cap,
the results stream, and which kind a full spool gives up first."""

from pathlib import Path
import numpy as np
import pytest

from vidpipe.config import config_from_dict
from vidpipe.outputs.broker import BrokerOutput, Message, jpeg_under
from vidpipe.outputs.spool import EVENT, RESULT, STATE


class Quiet(BrokerOutput):
    """A broker output whose broker never answers: what is offered stays spooled."""

    name = "quiet"

    def address(self, camera: str, stream: str, label: str = "") -> str:
        return "/".join([camera, stream] + ([label] if label else []))

    def service(self) -> None:
        pass


def make(tmp_path: Path, results: bool = False, **collector: object) -> Quiet:
    cc = config_from_dict({"collector": dict({"spool_dir": str(tmp_path), "state_hz": 0,
                                              "events_end_after_s": 0.3}, **collector)})
    output = Quiet(cc.collector, ["cam0"], results=results)
    output.start()
    return output


def test_a_message_survives_the_spool_format() -> None:
    msg = Message("snapshot", "cam0.snapshot.motion", b"\xff\xd8jpeg\n\0bytes", True,
                  {"event_id": "cam0-motion-1", "seq": 7})
    back = Message.unpack(msg.pack())
    assert (back.stream, back.address, back.payload, back.retain, back.headers) == \
        (msg.stream, msg.address, msg.payload, True, {"event_id": "cam0-motion-1", "seq": 7})
    assert back.content_type == "image/jpeg"
    assert Message.unpack(Message("events", "a", b"{}").pack()).content_type == \
        "application/json"


def test_a_record_this_version_cannot_read_is_counted_and_let_go(tmp_path: Path) -> None:
    output = make(tmp_path)
    try:
        output.spool.append(EVENT, b"R" + b"old/topic\0{}")  # the first mqtt format
        output.spool.append(EVENT, b"\xff\xfe not json\n")
        good = output.spool.append(EVENT, Message("events", "cam0/events", b"{}").pack())
        got = output.spooled(0, 10)
        assert [seq for seq, _m in got] == [good]
        assert output.counts["unreadable"] == 2
        assert output.spool.stats()["depth"] == 1  # the unreadable ones are gone
    finally:
        output.close(drain_s=0)


def test_a_snapshot_is_made_to_fit_its_cap() -> None:
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)  # JPEG's worst case
    data = jpeg_under(noise, 20 * 1024)
    assert data is not None and len(data) <= 20 * 1024 and data[:2] == b"\xff\xd8"
    assert jpeg_under(noise, 100) is None  # nothing that small: None, not an error


@pytest.mark.parametrize("kind,stream", [(EVENT, "events"), (STATE, "state"),
                                         (STATE, "snapshot"), (RESULT, "results")])
def test_each_stream_is_spooled_as_the_kind_a_full_spool_drops_in_order(
        kind: int, stream: str) -> None:
    from vidpipe.outputs.broker import KIND

    assert KIND[stream] == kind


def test_results_and_snapshots_are_offered_when_asked_for(tmp_path: Path) -> None:
    from brokers import feed
    from conftest import wait_until

    output = make(tmp_path, results=True, events_snapshot_kb=8)
    try:
        feed(output, 60, image=True)
        wait_until(lambda: output.queue.empty() and output.spool.stats()["depth"] ==
                   output.counts["queued"], 10, "everything spooled")
        messages = [m for _s, m in output.spooled(0, 1000)]
    finally:
        output.close(drain_s=0)
    streams = [m.stream for m in messages]
    assert streams.count("results") == 60
    results = [m for m in messages if m.stream == "results"]
    starts = [m for m in messages if m.stream == "events" and b'"type":"start"' in m.payload]
    snaps = [m for m in messages if m.stream == "snapshot"]
    assert len(starts) == 2 and len(snaps) == 2  # the score never rose: one with each start
    assert [m.headers["seq"] for m in snaps] == [1, 31]  # the frame each start was made on
    assert all(m.retain and m.address == "cam0/snapshot/motion" and len(m.payload) <= 8192
               and m.payload[:2] == b"\xff\xd8" for m in snaps)
    assert [int(m.payload.split(b'"seq":')[1].split(b",")[0]) for m in results] == \
        list(range(60))
