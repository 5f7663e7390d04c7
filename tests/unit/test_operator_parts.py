"""The parts behind status, metrics, preview, recording and taps, one at a time."""

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import encodes_h264
from vidpipe.status import metrics
from vidpipe.status.board import Board, read_board
from vidpipe.config import ConfigError, config_from_dict
from vidpipe.outputs.preview import box_list
from vidpipe.outputs.retention import Retention
from vidpipe.outputs.segments import Mp4Segment
from vidpipe.stats import Histogram
from vidpipe.tools.tapclient import GapCounter


# ---------------------------------------------------------------- taps

def test_gap_counter_counts_each_missing_number_once() -> None:
    gaps = GapCounter()
    for seq in (0, 1, 4, 5, 9):
        assert gaps.frame(7, seq)
    assert not gaps.frame(7, 5)  # a repeat is not a frame
    assert (gaps.received, gaps.missed, gaps.gaps) == (5, 5, 2)
    gaps.end(7, 12)  # frames 10 and 11 never came
    gaps.end(7, 12)  # end-of-stream notices are repeated
    assert (gaps.missed, gaps.gaps, gaps.ended) == (7, 3, True)


def test_gap_counter_tells_pipeline_drops_from_its_own_misses() -> None:
    gaps = GapCounter()
    gaps.frame(1, 0)
    gaps.dropped(1, 1)
    gaps.frame(1, 2)
    assert (gaps.missed, gaps.upstream_dropped) == (0, 1)


def test_gap_counter_starts_afresh_on_a_new_stream() -> None:
    gaps = GapCounter()
    gaps.frame(1, 50)
    gaps.frame(2, 0)  # the decoder restarted: numbers begin again
    gaps.frame(2, 1)
    assert (gaps.received, gaps.missed, gaps.streams) == (3, 0, 2)


# ---------------------------------------------------------------- metrics

def test_histogram_is_cumulative() -> None:
    hist = Histogram((0.01, 0.1, 1.0))
    for seconds in (0.005, 0.05, 0.05, 2.0):
        hist.add(seconds)
    assert hist.counts == [1, 3, 3] and hist.count == 4
    assert hist.sum == pytest.approx(2.105)


def test_metrics_text_format_and_escaping() -> None:
    hist = Histogram((0.01, 0.1))
    hist.add(0.02)
    entries = [
        {"role": "decoder", "name": "cam0", "alive": True, "restarts": 2, "queue_depth": 3,
         "cameras": {"cam0": {"frames": 10, "fps": 29.5, "dropped": {"no_capacity": 4}}}},
        {"role": "handler", "name": "1", "alive": False, "restarts": 0, "dropped": {"stale": 1},
         "malformed": {"bad_magic": 2},
         "cameras": {"cam0": {"frames": 6, "dropped": {"stale": 1}}}},
        {"role": "collector", "name": "main", "alive": True, "cameras": {
            'we"ird\\cam': {"frames": 1, "missing": 0, "latency_hist": hist.as_dict()}}},
    ]
    text = metrics.render(entries)
    lines = text.splitlines()
    assert '# TYPE vidpipe_frames_total counter' in lines
    assert 'vidpipe_frames_total{camera="cam0",name="cam0",role="decoder"} 10' in lines
    assert ('vidpipe_frames_dropped_total{camera="cam0",name="cam0",reason="no_capacity",'
            'role="decoder"} 4') in lines
    assert 'vidpipe_up{name="1",role="handler"} 0' in lines
    assert ('vidpipe_frames_dropped_total{camera="cam0",name="1",reason="stale",'
            'role="handler"} 1') in lines
    assert 'vidpipe_restarts_total{name="cam0",role="decoder"} 2' in lines
    assert ('vidpipe_malformed_messages_total{name="1",reason="bad_magic",role="handler"} 2'
            in lines)
    assert 'vidpipe_fps{camera="cam0",name="cam0",role="decoder"} 29.5' in lines
    cam = 'camera="we\\"ird\\\\cam"'
    assert 'vidpipe_latency_seconds_bucket{' + cam + ',le="0.01",name="main",role="collector"} 0' \
        in lines
    assert 'vidpipe_latency_seconds_bucket{' + cam + ',le="+Inf",name="main",role="collector"} 1' \
        in lines
    assert 'vidpipe_latency_seconds_count{' + cam + ',name="main",role="collector"} 1' in lines
    # each family's TYPE line comes once, before its samples
    assert sum(1 for line in lines if line.startswith("# TYPE vidpipe_frames_total ")) == 1


# ---------------------------------------------------------------- status board

def test_board_counts_restarts_and_spots_dead_processes(tmp_path: Path) -> None:
    Board(str(tmp_path), "handler", "1").publish({"frames": 1})
    again = Board(str(tmp_path), "handler", "1")
    assert again.restarts == 1
    again.publish({"frames": 2})
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        doc = (tmp_path / "status" / "handler-1.json").read_text()
        (tmp_path / "status" / "handler-2.json").write_text(
            doc.replace('"name":"1"', '"name":"2"').replace(
                '"pid":{}'.format(os.getpid()), '"pid":{}'.format(child.pid)))
        assert {d["name"]: d["state"] for d in read_board(str(tmp_path))} == \
            {"1": "running", "2": "running"}
        child.kill()
        child.wait()
        entries = {d["name"]: d for d in read_board(str(tmp_path))}
        assert entries["2"]["state"] == "dead" and not entries["2"]["alive"]
        assert entries["1"]["frames"] == 2 and entries["1"]["restarts"] == 1
    finally:
        child.kill()
        child.wait()


def test_board_survives_an_unwritable_directory(tmp_path: Path, caplog: Any) -> None:
    (tmp_path / "status").write_text("a file where the directory should be")
    board = Board(str(tmp_path), "decoder", "cam0")
    board.publish({})
    board.publish({})
    assert sum("cannot write status" in r.message for r in caplog.records) == 1


# ---------------------------------------------------------------- recording retention

def _segment(folder: Path, name: str, size: int, age: float = 0) -> Path:
    path = folder / name
    path.write_bytes(b"\0" * size)
    when = time.time() - age
    os.utime(path, (when, when))
    return path


def test_retention_deletes_the_oldest_first_until_it_fits(tmp_path: Path) -> None:
    cam = tmp_path / "cam0"
    cam.mkdir()
    old = _segment(cam, "cam0-20261130T100000Z-000000.h5", 400, age=30)
    mid = _segment(cam, "cam0-20261130T100500Z-000150.mp4", 400, age=20)
    new = _segment(cam, "cam0-20261130T101000Z-000300.h5", 400, age=10)
    other = _segment(cam, "notes.txt", 5000)  # not ours: never counted or deleted
    open_bytes = [100]
    ret = Retention(str(tmp_path), 1000, 0, 0, lambda: open_bytes[0])
    assert ret.closed_bytes() == 1200
    assert ret.make_room(50) == ""  # 1200 + 100 + 50 > 1000: one segment must go
    assert not old.exists() and mid.exists() and new.exists() and other.exists()
    assert ret.make_room(350) == ""  # 800 + 100 + 350: the next oldest
    assert not mid.exists() and new.exists()
    open_bytes[0] = 2000  # an open file alone is over the limit
    assert "record.max_bytes" in ret.make_room(10)
    assert not new.exists()


def test_retention_expires_by_age_and_keeps_free_space(tmp_path: Path) -> None:
    cam = tmp_path / "cam0"
    cam.mkdir()
    old = _segment(cam, "cam0-20261130T090000Z-000000.h5", 10, age=3600)
    young = _segment(cam, "cam0-20261130T100000Z-000100.h5", 10, age=5)
    ret = Retention(str(tmp_path), 10 ** 9, 60, 0, lambda: 0)
    ret.expire(time.time())
    assert not old.exists() and young.exists()
    st = os.statvfs(str(tmp_path))
    greedy = Retention(str(tmp_path), 10 ** 15, 0, st.f_bavail * st.f_frsize * 4, lambda: 0)
    why = greedy.make_room(1)
    assert "below record.min_free_mb" in why and not young.exists()


def test_the_keeper_holds_other_processes_segments_to_the_limits(tmp_path: Path) -> None:
    """The decoders write the cameras' own streams (.camera.mp4); the
    collector's keeper finds new ones on each look and deletes the oldest of
    vidpipe's segments only, never one being written or a stranger's file."""
    from vidpipe.outputs.retention import Keeper

    cam = tmp_path / "door"
    cam.mkdir()
    first = _segment(cam, "door-20261130T100000Z-000001.camera.mp4", 600, age=30)
    keeper = Keeper(str(tmp_path), 1000, 0, 0, period_s=3600)
    try:
        assert first.exists()  # 600 <= 1000
        second = _segment(cam, "door-20261130T100002Z-000002.camera.mp4", 600, age=20)
        writing = _segment(cam, "door-20261130T100004Z-000003.camera.part.mp4", 5000, age=0)
        stranger = _segment(cam, "door-20261130T100000Z-000001.camera.mp4.bak", 5000, age=40)
        keeper.keep()
        assert not first.exists() and second.exists() and writing.exists() \
            and stranger.exists() and keeper.short == ""
    finally:
        keeper.close()


# ---------------------------------------------------------------- preview

def gradient_frames(count: int) -> Any:
    """Frames that compress well: the whole segment fits in the muxer's buffer."""
    row = np.linspace(0, 255, 320, dtype=np.uint8)[None, :].repeat(240, 0)
    for n in range(count):
        yield np.roll(row, 3 * n, axis=1)


def test_an_mp4_segment_estimate_bounds_its_size_once_closed(tmp_path: Path,
                                                           monkeypatch: Any) -> None:
    # FFmpeg keeps up to 256 KiB in memory: a segment that stays at a few bytes
    # on disk while open must still be counted at what it will be
    monkeypatch.setattr(Mp4Segment, "codec", "mp4v")
    seg = Mp4Segment(str(tmp_path / "a.mp4"), "cam0", np.zeros((240, 320), np.uint8), 30.0)
    estimates = []
    for image in gradient_frames(290):
        seg.write(image, 0, 0)
        estimates.append(seg.size_estimate())
    final = seg.finish()
    assert final is not None
    size = os.path.getsize(final)
    assert size > 100 * 1024  # the muxer really held this much (the point of the test)
    assert size <= estimates[-1], (size, estimates[-1])
    assert all(b >= a - 1 for a, b in zip(estimates, estimates[1:]))


def test_an_h264_segment_estimate_allows_for_a_whole_fragment(tmp_path: Path, caplog: Any,
                                                              monkeypatch: Any) -> None:
    """H.264 through GStreamer writes a fragmented MP4, a second of frames at
    once: at 1080p a fragment is larger than the muxer slack, and the
    estimate grows with the largest write seen, so it still bounds the file
    (and nothing warns that max_bytes was passed). Where OpenCV has no
    GStreamer (the floors' PyPI build) the same holds of FFmpeg's mp4v, which
    writes in blocks larger than the slack this test sets."""
    monkeypatch.setattr(Mp4Segment, "codec", "h264" if encodes_h264() else "mp4v")
    monkeypatch.setattr(Mp4Segment, "held", 64 * 1024)  # a fragment is bigger than this
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    seg = Mp4Segment(str(tmp_path / "a.mp4"), "cam0", base, 30.0)
    estimates = []
    for n in range(75):
        seg.write(np.roll(base, 8 * n, axis=1), 0, 0)
        estimates.append(seg.size_estimate())
    final = seg.finish()
    assert final is not None
    assert seg.step > 64 * 1024, seg.step  # the point of the test
    assert os.path.getsize(final) <= max(estimates), (os.path.getsize(final), estimates[-5:])
    assert "more than the" not in caplog.text


def test_an_mp4_muxer_holding_more_raises_the_bound(tmp_path: Path, caplog: Any,
                                                    monkeypatch: Any) -> None:
    monkeypatch.setattr(Mp4Segment, "held", 1000)  # as if FFmpeg buffered more than assumed
    monkeypatch.setattr(Mp4Segment, "codec", "mp4v")
    seg = Mp4Segment(str(tmp_path / "a.mp4"), "cam0", np.zeros((240, 320), np.uint8), 30.0)
    for image in gradient_frames(100):
        seg.write(image, 0, 0)
    final = seg.finish()
    assert Mp4Segment.held > 1000
    assert "more than the 1000 allowed for" in caplog.text
    assert os.path.getsize(final) <= 44 + Mp4Segment.held + 32 * 100


def test_box_list_reads_every_stage_that_finds_boxes() -> None:
    meta = {"faces": [[1, 2, 3, 4]], "motion": {"boxes": [[5, 6, 7, 8]]},
            "detections": [{"box": [9, 10, 11, 12], "label": "red", "confidence": 0.9},
                           {"nobox": 1}], "gray": True}
    assert box_list(meta) == [((9, 10, 11, 12), "red 0.90"), ((1, 2, 3, 4), "face"),
                              ((5, 6, 7, 8), "")]
    assert box_list({"faces": "garbage", "detections": [{"box": [1, 2]}]}) == []


def test_preview_render_draws_boxes_scaled_to_the_preview() -> None:
    import cv2

    from vidpipe.outputs.preview import PreviewOutput

    out = PreviewOutput(5, 320, 95, True, ["cam0"])
    try:
        small = np.zeros((240, 320), np.uint8)  # a 640x480 frame shrunk by half
        jpeg = out.render("cam0", small, {"faces": [[200, 200, 200, 100]]}, 0.5, 7)
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (240, 320, 3)
        green = image[:, :, 1].astype(int) - image[:, :, 2].astype(int)
        assert green[100, 150] > 100 and green[150, 100] > 100  # the box edges at half scale
        assert green[125, 150] < 50  # inside is untouched
    finally:
        out.close()


# ---------------------------------------------------------------- config

@pytest.mark.parametrize("collector, key, text", [
    ({"outputs": ["preview"], "http": {"listen": "localhost"}}, "collector.http.listen",
     "HOST:PORT"),
    ({"http": {"metrics": True, "listen": "1.2.3.4:99999"}}, "collector.http.listen",
     "HOST:PORT"),
    ({"outputs": ["record"], "record": {"formats": []}}, "collector.record.formats",
     "at least one"),
    ({"outputs": ["record"], "record": {"formats": ["avi"]}}, "collector.record.formats[0]",
     "'mp4'"),
    ({"outputs": ["record"], "record": {"dir": "recordings"}}, "collector.record.dir",
     "absolute"),
    # the old flat name, still read, is named as the file spells it
    ({"outputs": ["record"], "record_dir": "recordings"}, "collector.record_dir", "absolute"),
    ({"outputs": ["recrod"]}, "collector.outputs[0]", "'record'"),
])
def test_operator_config_errors_name_the_key(collector: Any, key: str, text: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict({"collector": collector}, "p.toml")
    assert err.value.key == key and text in err.value.message


def test_tap_endpoints_default_to_the_runtime_dir() -> None:
    config = config_from_dict({"pipeline": {"runtime_dir": "/run/x"},
                               "cameras": {"cam0": {"source": "testsrc"}}})
    assert config.cameras["cam0"].tap == "ipc:///run/x/tap-cam0.sock"
    assert config.collector.tap == "ipc:///run/x/tap-collector.sock"


# ---------------------------------------------------------------- tap publisher

def test_tap_publisher_knows_who_listens_and_stays_bounded(short_tmp: Path) -> None:
    import zmq

    from vidpipe.link import sockets as transport, wire
    from vidpipe.link.tap import MAX_TOPICS, XPUB_SAFE, TapPublisher

    sockets = transport.Sockets(1 << 20, None)
    endpoint = "ipc://{}/tap.sock".format(short_tmp)
    pub = TapPublisher(sockets, endpoint, 4)
    pub.bind()
    ctx = zmq.Context.instance()
    if zmq.zmq_version_info() < XPUB_SAFE:
        # an old libzmq (Ubuntu 20.04's 4.3.2): a PUB socket that publishes
        # everything, and that a subscriber's garbage cannot crash
        assert pub.sock.type == zmq.PUB and pub.wanted("cam0")
        raw = ctx.socket(zmq.XSUB)
        raw.connect(endpoint)
        raw.send(b"\x01cam0")
        raw.send(b"\x07garbage that is no subscription")
        time.sleep(0.3)
        pub.publish("cam0", wire.control_parts(wire.EOS, {}, "cam0", 1, 3))
        assert raw.poll(5000) and raw.recv_multipart()[0] == b"cam0"
        raw.close(0)
        sockets.close()
        return
    sub = ctx.socket(zmq.SUB)
    sub.connect(endpoint)
    try:
        assert not pub.wanted("cam0")
        sub.setsockopt(zmq.SUBSCRIBE, b"cam0")

        def until(predicate: Any) -> bool:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if predicate():
                    return True
                time.sleep(0.01)
            return False

        assert until(lambda: pub.wanted("cam0"))
        assert not pub.wanted("cam1")
        pub.publish("cam0", wire.control_parts(wire.EOS, {}, "cam0", 1, 3))
        assert sub.poll(5000)
        topic, head, _meta = sub.recv_multipart()
        assert topic == b"cam0" and wire.parse_header(head).seq == 3
        sub.setsockopt(zmq.UNSUBSCRIBE, b"cam0")
        assert until(lambda: not pub.wanted("cam0"))

        # somebody subscribing to ever new topics cannot grow the table
        raw = ctx.socket(zmq.XSUB)
        raw.connect(endpoint)
        raw.send(b"\x01probe")
        assert until(lambda: pub.wanted("probe"))  # connected
        raw.send(b"\x07garbage that is no subscription")
        for n in range(MAX_TOPICS + 500):
            raw.send(b"\x01flood%d" % n)
            if n % 100 == 99:  # in batches: both ends' queues hold 1000
                assert until(lambda: (pub.wanted("x"), len(pub.subscriptions) >= min(
                    MAX_TOPICS, n - 100))[1])
        assert until(lambda: (pub.wanted("x"), len(pub.subscriptions) >= MAX_TOPICS)[1])
        time.sleep(0.2)
        pub.wanted("x")
        assert len(pub.subscriptions) == MAX_TOPICS
        raw.close(0)
    finally:
        sub.close(0)
        sockets.close()


def test_status_table_shows_brokers_and_no_terminal_controls(tmp_path: Path) -> None:
    """Issue 24: ``vidpipe status`` printed control characters from status
    files (a broker's reason, a camera's error) and had no broker or spool
    column. Each cell is one printable line; the collector's note names each
    broker output's state and spool."""
    from vidpipe.tools.status import gather, table

    Board(str(tmp_path), "collector", "main").publish({
        "why_idle": "waiting\x1b[2J\x1b[H\nfor cameras",
        "output_status": {"mqtt": {"broker": "connected", "depth": 0},
                          "amqp": {"broker": "refused: bye\x07\r\nWATCHDOG=1", "depth": 12,
                                   "refused": 3},
                          "jsonl": {"written": 5}}})
    text = table(gather(str(tmp_path), with_units=False))
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text
    row = next(line for line in text.splitlines() if line.startswith("collector"))
    assert "waiting?[2J?[H?for cameras" in row
    assert "amqp refused: bye???WATCHDOG=1, 12 spooled, 3 refused; mqtt connected, 0 spooled" \
        in row


def test_a_forgotten_camera_leaves_the_preview_and_ends_its_viewers() -> None:
    """The feed of a camera the collector forgot goes (it took one of
    MAX_CAMERAS places) and whoever waits on it is let go at once."""
    import threading

    from vidpipe.outputs.preview import PreviewOutput

    out = PreviewOutput(5, 320, 95, True, ["cam0"])
    try:
        feed = out.feed("made-up")
        assert feed is not None and "made-up" in out.feeds
        waited = []
        waiter = threading.Thread(target=lambda: waited.append(feed.wait_newer(0, 10.0)))
        waiter.start()
        time.sleep(0.2)
        out.forget("made-up")
        waiter.join(2)
        assert not waiter.is_alive() and waited == [(None, 0)]
        assert sorted(out.feeds) == ["cam0"] and feed.gone
    finally:
        out.close()


def test_preview_draws_zones_lines_and_tracked_objects_with_their_trails() -> None:
    """A camera that tracks: its zone (orange outline), line (magenta arrow)
    and each object's box in a colour of its track ID, with the path its
    feet took; hostile objects are left out, not drawn or crashed on."""
    import cv2

    from vidpipe.analytics.areas import parse
    from vidpipe.outputs.preview import PreviewOutput

    zones, lines = parse({"hall": {"points": [[20, 20], [300, 20], [300, 200], [20, 200]]}},
                         {"door": {"points": [[160, 0], [160, 240]]}}, 320, 240)
    out = PreviewOutput(5, 320, 95, True, ["cam0"], {"cam0": (zones, lines)})
    try:
        objects = [{"id": 3, "label": "person", "box": [60, 60, 40, 80]},
                   {"id": "x", "box": "junk"}, "junk", {"id": 4, "box": [1, 2, 3]},
                   {"id": 5, "box": ["a", "b", "c", "d"]}]
        trails = out._trails("cam0", objects[:1])
        trails = out._trails("cam0", [dict(objects[0], box=[70, 70, 40, 80])])
        assert trails == {3: [(80.0, 140.0), (90.0, 150.0)]}
        assert out._trails("cam1", objects[1:]) == {}  # malformed ones: no trail, no crash
        small = np.zeros((240, 320), np.uint8)
        jpeg = out.render("cam0", small, {"objects": objects, "trails": trails}, 1.0, 1)
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).astype(int)
        assert image[20, 150, 0] > 150 and image[20, 150, 2] < 100  # the zone's top (BGR)
        assert image[120, 160, 0] > 150 and image[120, 160, 2] > 150  # the line, magenta
        assert image[80:130, 60, :].min(axis=1).min() > 60  # its left edge, in its colour
        assert image[100, 80, :].max() < 40  # inside is untouched
    finally:
        out.close()
