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


def test_an_objects_best_picture_is_its_labels_snapshot(tmp_path: Path) -> None:
    """A camera that tracks: each object start and update (its best frame so
    far) is published with the frame as the label's retained snapshot,
    naming the event and the track; zone and line events make none."""
    from brokers import motion_entry
    from conftest import wait_until
    from vidpipe.analytics.areas import parse
    from vidpipe.analytics.scene import Scene

    zones, lines = parse({"left": {"points": [[0, 0], [80, 0], [80, 120], [0, 120]]}}, None,
                         160, 120)
    scene = Scene(zones, lines, update_s=0.5)
    output = make(tmp_path, events_snapshot_kb=8)
    try:
        for seq in range(40):
            entry = motion_entry(seq, False, seq * 33_333_333, image=True)
            meta = entry.message.meta
            meta["detections"] = [{"box": [40 + seq, 30, 20, 40], "label": "a dog",
                                   "confidence": 0.6 + seq * 0.005}]
            scene.observe(meta, seq * 33_333_333)
            output.emit("cam0", entry, 1.0)
        wait_until(lambda: output.queue.empty() and output.spool.stats()["depth"] ==
                   output.counts["queued"], 10, "everything spooled")
        messages = [m for _s, m in output.spooled(0, 1000)]
    finally:
        output.close(drain_s=0)
    objects = [m for m in messages if m.stream == "events" and b'"type":"object"' in m.payload]
    # (the per-label events of the detections make their own snapshots, no track)
    snaps = [m for m in messages if m.stream == "snapshot" and "track" in m.headers]
    assert [m.headers["seq"] for m in snaps] == [0, 16, 32], [m.headers for m in snaps]
    assert len(objects) == 3 and b'"action":"update"' in objects[1].payload
    assert all(m.address == "cam0/snapshot/a_dog" and m.headers["track"] == 1 and m.retain
               and m.payload[:2] == b"\xff\xd8" and m.headers["event_id"].startswith(
                   "cam0-object--") for m in snaps)
    assert any(b'"type":"zone"' in m.payload for m in messages)  # left at x 80: no snapshot


class Flaky(Quiet):
    """A broker output whose client library raises once, as a bug would."""

    name = "flaky"
    calls = 0

    def service(self) -> None:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("line one\nSTOPPING=1")


def test_the_publisher_thread_outlives_any_error_and_says_so(tmp_path: Path) -> None:
    """Issue 24: the publisher thread died for good on an error outside
    SpoolError (a full file system, an odd snapshot) while the status still
    said connected. Each step is guarded; the error is counted and shown."""
    from conftest import wait_until

    cc = config_from_dict({"collector": {"spool_dir": str(tmp_path), "state_hz": 0,
                                         "events_snapshot_kb": 8}}).collector
    output = Flaky(cc, ["cam0"])
    output.start()
    try:
        wait_until(lambda: output.calls >= 3, 5, "service called again after the error")
        status = output.status()
        assert status["errors"] == 1 and output.thread.is_alive()
        assert status["error"] == "publishing failed: RuntimeError: line one?STOPPING=1"
        # the spool's disk refuses a write: counted, the next message is spooled
        real = output.spool.append

        def full(*_a: object, **_k: object) -> int:
            raise OSError(28, "No space left on device")

        output.spool.append = full  # type: ignore[assignment]
        output._offer("cam0", "events", {"n": 1})
        wait_until(lambda: output.queue.empty() and output.status()["errors"] == 2, 5,
                   "the failed write counted")
        output.spool.append = real  # type: ignore[assignment]
        output._offer("cam0", "events", {"n": 2})
        wait_until(lambda: output.spool.stats()["depth"] == 1, 5, "the next one spooled")
        assert "No space left" in output.status()["error"] and output.thread.is_alive()
        # a snapshot of one pixel row cannot be made smaller: too big, not an error
        noise = np.random.default_rng(2).integers(0, 256, (1, 40000, 3), dtype=np.uint8)
        output._offer("cam0", "snapshot", noise)
        wait_until(lambda: output.counts["snapshot_too_big"] == 1, 5, "snapshot refused")
        assert output.status()["errors"] == 2
    finally:
        output.close(drain_s=0)


def test_jpeg_under_stops_where_nothing_smaller_can_be_made() -> None:
    assert jpeg_under(np.zeros((1, 1, 3), np.uint8), 10) is None


def test_the_spool_limit_is_shared_by_the_broker_outputs(tmp_path: Path, caplog) -> None:
    """Issue 24: each broker output had the whole spool_max_mb (the shipped
    config reads as one limit), and drops were counted but never logged."""
    import logging

    from vidpipe.outputs.broker import spool_share

    def share(outputs: list, mb: int = 64) -> int:
        return spool_share(config_from_dict({"collector": {
            "outputs": outputs, "spool_max_mb": mb, "spool_dir": str(tmp_path)}}).collector)

    assert share(["mqtt"]) == 64 << 20
    assert share(["mqtt", "amqp", "log"]) == 32 << 20
    assert share(["mqtt", "amqp"], mb=1) == 1 << 20  # at least a MiB each
    output = make(tmp_path, results=True, spool_max_mb=1)
    try:
        with caplog.at_level(logging.WARNING, logger="vidpipe.broker"):
            for n in range(2000):  # 1.3 MB for a 1 MiB spool
                output._offer("cam0", "results", {"n": n, "pad": "x" * 600})
            from conftest import wait_until

            # a bound, not a wait: a box busy with other suites took over 10 s
            wait_until(lambda: output.queue.empty(), 60, "spooled")
            wait_until(lambda: output.spool.dropped.as_dict().get("result"), 5, "drops")
        lines = [r.getMessage() for r in caplog.records if "spool is full" in r.getMessage()]
        assert len(lines) == 1 and '"result":' in lines[0], lines  # said once, with counts
        assert output.spool.stats()["disk_bytes"] <= 1 << 20
    finally:
        output.close(drain_s=0)


def test_a_forgotten_camera_ends_its_events_and_leaves_no_state(tmp_path: Path) -> None:
    """Issue 24: the collector forgets a camera the config does not name when
    made-up names need its place; the broker outputs forget it too (before,
    their counters, tracker and discovery list grew with every name): its
    open event ends, published as at the end of a stream."""
    import json

    from brokers import motion_entry
    from conftest import wait_until

    output = make(tmp_path)
    try:
        for seq in range(5):  # motion on: an event starts
            output.emit("made-up", motion_entry(seq, True, seq * 33_333_333), 1.0)
        output.emit("cam0", motion_entry(0, False, 0), 1.0)
        assert "made-up" in output.known and "made-up" in output.tracker.cameras
        output.forget("made-up")
        output.forget("cam0")  # a configured camera keeps its place in discovery
        assert "made-up" not in output.cameras and "made-up" not in output.tracker.cameras
        assert output.known == ["cam0"]
        wait_until(lambda: output.queue.empty() and output.spool.stats()["depth"] ==
                   output.counts["queued"], 10, "everything spooled")
        events = [json.loads(m.payload) for _s, m in output.spooled(0, 100)
                  if m.stream == "events"]
    finally:
        output.close(drain_s=0)
    assert [(e["camera"], e["type"]) for e in events] == [("made-up", "start"),
                                                         ("made-up", "end")]


def test_the_state_shows_the_collectors_figures_and_every_zone_and_line(
        tmp_path: Path) -> None:
    """What Home Assistant's sensors read: the collector's own figures for
    the camera (the ones /metrics shows: one count, not two), every
    configured zone and line present from the start (zeros), occupancy and
    crossings summed over classes."""
    from brokers import motion_entry

    cc = config_from_dict({"collector": {"spool_dir": str(tmp_path), "state_hz": 0}})
    output = Quiet(cc.collector, ["cam0"], areas={"cam0": (["hall"], ["door"])})
    output.start()
    try:
        output.emit("cam0", motion_entry(0, False, 0), 1.0)
        state = output._state("cam0")  # no collector behind it: nothing counted
        assert state["zones"] == {"hall": 0} and state["lines"] == {"door": {"in": 0, "out": 0}}
        assert (state["processed"], state["dropped"], state["fps"]) == (0, 0, 0.0)
        output.figures = lambda camera: {
            "frames": 41, "dropped": {"no_capacity": 2, "stale": 1}, "missing": 3,
            "fps": 29.5, "latency_p50_ms": 12.0, "latency_p99_ms": 40.0,
            "areas": {"zones": {"hall": {"occupancy": {"person": 2, "car": 1},
                                         "entered": {"person": 5}}},
                      "lines": {"door": {"in": {"person": 4}, "out": {"person": 1, "car": 2}}},
                      "tracks": 3}}
        state = output._state("cam0")
        assert (state["processed"], state["dropped"], state["missing"], state["fps"],
                state["latency_p50_ms"]) == (41, 3, 3, 29.5, 12.0)
        assert state["zones"] == {"hall": 3} and state["lines"] == {"door": {"in": 4, "out": 3}}
        assert "zones" not in output._state("cam1")  # a camera without areas: none
    finally:
        output.close(drain_s=0)
