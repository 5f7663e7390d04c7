"""Event clips' parts (issue 28): the decoder's pre-roll of encoded packets,
its requests read as hostile input, and the collector's requests over a real
ZeroMQ socket, naming the clip the broker events name."""

import json
import time
import zlib
from pathlib import Path
from typing import Any, List

import zmq

from brokers import motion_entry
from vidpipe.capture.clips import NS, Clips, Packet, PreRoll
from vidpipe.config import config_from_dict
from vidpipe.link.sockets import Sockets
from vidpipe.link.clipwire import clip_name, topic
from vidpipe.outputs import Site
from vidpipe.outputs.clips import ClipOutput, clip_ref

FPS = 30
GOP = 30  # a key frame a second, as most cameras send


def stream(seconds: float, start_ns: int = 10 * NS, size: int = 1000) -> List[Packet]:
    frame_ns = NS // FPS
    return [Packet(start_ns + n * frame_ns, n % GOP == 0, n * frame_ns, n * frame_ns,
                   frame_ns, bytes(size)) for n in range(int(seconds * FPS))]


def test_the_pre_roll_holds_the_time_kept_from_a_key_frame_and_no_more() -> None:
    ring = PreRoll(keep_s=2.0)
    packets = stream(10.0)
    for p in packets:
        ring.add(p)
        held = ring.packets
        assert held[0].key  # always decodable from its start
        span = held[-1].ns - held[0].ns
        # the time kept is there once the stream is that old; less than a GOP more
        assert span >= min(2.0 * NS, p.ns - packets[0].ns) - NS // FPS
        assert span < 3.0 * NS
    # a clip asked from a time: the last key frame at or before it
    from_ns = packets[-1].ns - int(1.5 * NS)
    got = ring.since(from_ns)
    assert got[0].key and got[0].ns <= from_ns < got[0].ns + NS
    assert got[-1] == packets[-1]
    # from before what is held: from the oldest key frame held
    assert ring.since(0)[0] == ring.packets[0]


def test_the_pre_roll_is_bounded_in_bytes_and_starts_at_a_key_frame() -> None:
    ring = PreRoll(keep_s=60.0, max_bytes=100_000)
    for p in [Packet(1, False, 0, 0, 0, b"x")] + stream(10.0, size=2000):
        ring.add(p)
        assert ring.bytes <= 100_000 + GOP * 2000
        assert not ring.packets or ring.packets[0].key  # a delta frame alone is no use
    assert ring.packets[-1].ns == 10 * NS + (10 * FPS - 1) * (NS // FPS)
    assert ring.bytes == sum(len(p.data) for p in ring.packets)


def test_hostile_clip_requests_are_counted_and_cut_nothing(tmp_path: Path) -> None:
    clips = Clips("door", str(tmp_path / "door"), 5.0, None, "ipc://unused", lambda: "")
    good_name = clip_name("door", "door-person-1", 1_700_000_000 * NS)
    hostile = [b"\xff\xfe", b"not json", b"[]", b"{}", b'"start"',
               json.dumps({"op": "start", "name": "../../etc/passwd", "from_ns": 1}).encode(),
               json.dumps({"op": "start", "name": clip_name("yard", "x", 0),
                           "from_ns": 1}).encode(),  # another camera's
               json.dumps({"op": "start", "name": good_name + "\n", "from_ns": 1}).encode(),
               json.dumps({"op": "start", "name": good_name, "from_ns": True}).encode(),
               json.dumps({"op": "start", "name": good_name, "from_ns": 1.5}).encode(),
               json.dumps({"op": "start", "name": good_name, "from_ns": -1}).encode(),
               json.dumps({"op": "start", "name": good_name, "from_ns": 2 ** 64}).encode(),
               json.dumps({"op": "delete", "name": good_name, "from_ns": 1}).encode(),
               json.dumps({"op": "end", "name": good_name, "from_ns": 1}).encode(),
               json.dumps({"op": "start", "name": [good_name], "from_ns": 1}).encode()]
    for raw in hostile:
        clips.request(raw)
    assert clips.counts["bad_requests"] == len(hostile)
    # a good request with no stream yet: said, nothing written, nothing raised
    clips.request(json.dumps({"op": "start", "name": good_name, "from_ns": 1,
                              "event": "e\x00vil"}).encode())
    assert clips.counts["no_stream"] == 1 and not clips.open
    clips.request(json.dumps({"op": "end", "name": good_name, "until_ns": 5}).encode())
    assert clips.counts["end_unknown"] == 1
    assert not (tmp_path / "door").exists()


def test_the_collector_asks_for_the_clip_the_broker_events_name(tmp_path: Path) -> None:
    config = config_from_dict({
        "pipeline": {"runtime_dir": str(tmp_path)},
        "cameras": {"cam0": {"source": "rtsp://cam/main", "record": "passthrough",
                             "clips": ["motion"], "preroll_s": 4, "postroll_s": 2},
                    "cam1": {"source": "testsrc"}},
        "collector": {"events": {"min_frames": 2, "end_after_s": 0.3}}}, "p.toml")
    sockets = Sockets(1 << 20)
    try:
        output = ClipOutput.build(config.collector, Site(config.cameras))
        output.bind(sockets)
        sub = sockets.make(zmq.SUB, rcvhwm=100)
        sub.setsockopt(zmq.SUBSCRIBE, topic("cam0"))
        sockets.connect(sub, config.collector.clips)
        time.sleep(0.3)  # the subscription reaches the publisher
        frame_ns, base = NS // 30, 1_700_000_000 * NS
        for seq in range(40):  # motion in frames 5..14, then none
            output.emit("cam0", motion_entry(seq, 5 <= seq < 15, base + seq * frame_ns), 1.0)
            output.emit("cam1", motion_entry(seq, True, base + seq * frame_ns), 1.0)  # no clips
        got: List[Any] = []
        while sub.poll(1000):
            got.append(sub.recv_multipart())
        assert [t for t, _ in got] == [b"cam0/", b"cam0/"]
        start, end = (json.loads(doc) for _, doc in got)
        event_id = "cam0-motion-{}".format(base + 5 * frame_ns)
        name = clip_ref("cam0", event_id, base + 5 * frame_ns)["name"]
        assert name == "cam0-20231114T221320Z-{:010d}.clip.mp4".format(
            zlib.crc32(event_id.encode()))
        assert start == {"op": "start", "name": name, "event": event_id, "label": "motion",
                         "from_ns": base + 5 * frame_ns - 4 * NS}
        assert end == {"op": "end", "name": name, "until_ns": base + 14 * frame_ns + 2 * NS}
        assert output.status() == {"starts": 1, "ends": 1}
    finally:
        sockets.close()


def test_a_reconnect_is_a_new_stream_even_with_the_same_caps(tmp_path: Path) -> None:
    """Each run of the recording starts its time stamps anew: what the
    pre-roll held goes, and a clip being written ends, though the camera's
    caps are the same as before (a clip mixing two runs' time stamps would
    not play in order)."""
    from types import SimpleNamespace

    clips = Clips("door", str(tmp_path / "door"), 5.0, None, "ipc://unused", lambda: "")
    caps = object()
    clips.new_stream(None, "h264", caps)
    for p in stream(3.0):
        clips.packet(p)
    writer = SimpleNamespace(until_ns=2 ** 62)
    clips.open["clip"] = writer  # type: ignore[assignment]
    clips.new_stream(None, "h264", caps)
    assert not clips.preroll.packets and clips.preroll.bytes == 0
    assert writer.until_ns == 0  # the clips thread closes it
