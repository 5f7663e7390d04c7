"""Event clips with pre-roll (issue 28): an event of a label a camera lists
in ``clips`` gets a clip of the camera's own H.264 stream, cut by its
decoder from the packets it holds in memory, from ``preroll_s`` before the
event's first frame to ``postroll_s`` after its last; the event on MQTT names
the clip and its URL, and the collector serves it. The real RTSP test camera,
a real mosquitto, ffprobe and ffmpeg judge."""

import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

import pytest

from brokers import Mosquitto, Subscriber
from conftest import SRC, free_port, need_module, wait_until
from test_passthrough import decode_errors
from test_rtsp import RtspCamera

pytestmark = pytest.mark.once
need_module("paho.mqtt.client")  # Debian: python3-paho-mqtt (./dev test installs it)

#: a stage that sees a visitor in the frames FIRST..LAST of the analysis stream
VISITOR = '''
FIRST, LAST = {first}, {last}


class Visitor:
    name = "visitor"

    def __init__(self, options):
        pass

    def process(self, frame):
        if FIRST <= frame.seq <= LAST:
            frame.meta.setdefault("detections", []).append(
                {{"label": "visitor", "box": [10, 10, 60, 90], "confidence": 0.9}})
'''
PREROLL_S = 3.0
POSTROLL_S = 1.0


def packet_times(path: Path) -> List[float]:
    """The clip's packets' presentation times (s), in decoding order."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                          "packet=pts_time", "-of", "csv=p=0", str(path)],
                         stdout=subprocess.PIPE, universal_newlines=True, timeout=30, check=True)
    return [float(t) for t in out.stdout.split()]


def comment(path: Path) -> str:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags=comment",
                          "-of", "json", str(path)], stdout=subprocess.PIPE,
                         universal_newlines=True, timeout=30, check=True)
    return str(json.loads(out.stdout)["format"].get("tags", {}).get("comment", ""))


def visitor_events(sub: Subscriber) -> Dict[str, Dict[str, Any]]:
    return {e["type"]: e for e in sub.events() if e.get("label") == "visitor"}


def test_an_events_clip_starts_before_it_and_holds_its_last_frame(tmp_path: Path,
                                                                 pipeline: Any) -> None:
    (tmp_path / "visitorstage.py").write_text(VISITOR.format(first=50, last=70))
    env = {"PYTHONPATH": os.pathsep.join([str(SRC), str(tmp_path)])}
    camera = RtspCamera()
    broker = Mosquitto(tmp_path)
    sub = Subscriber(broker.port)
    port = free_port()
    try:
        record = pipeline.root / "recordings"
        pipeline.write_config({
            "cameras": {"cam0": {"source": camera.url("h264"), "decode": "software",
                                 "width": 320, "height": 240, "fps": 10,
                                 "record": "passthrough", "record_url": camera.url("h264"),
                                 "clips": ["visitor"], "preroll_s": PREROLL_S,
                                 "postroll_s": POSTROLL_S}},
            "handlers": {"stages": ["visitorstage:Visitor"]},
            "collector": {"outputs": ["jsonl", "mqtt"], "mqtt": {"port": broker.port},
                          "spool": {"dir": str(pipeline.root / "spool")},
                          "events": {"min_frames": 2, "end_after_s": 1.0},
                          "http": {"listen": "127.0.0.1:{}".format(port)},
                          "record": {"dir": str(record), "segment_s": 4, "min_free_mb": 0}}})
        pipeline.start("collector", "main")
        pipeline.start("handler", "1", env=env)
        decoder = pipeline.start("decoder", "cam0")
        wait_until(lambda: {"start", "end"} <= set(visitor_events(sub)), 60,
                   "the visitor's start and end over MQTT")
        events = visitor_events(sub)
        start, end = events["start"], events["end"]
        clip = start["clip"]
        # every event of the occurrence names the same clip, where it is served
        assert end["clip"] == clip and clip["url"] == "/recordings/cam0/" + clip["name"]
        path = record / "cam0" / clip["name"]
        wait_until(path.exists, 20, "the clip closed")
        assert decoder.proc.poll() is None

        first_ns = int(comment(path).rpartition("first_ns=")[2])
        times = packet_times(path)
        assert times and decode_errors(path) == "", path
        begins = first_ns + min(times) * 1e9
        ends = first_ns + max(times) * 1e9
        # from preroll_s before the event's first frame (a key frame at or
        # before it: the camera sends one a second) ...
        assert begins <= start["start_ns"] - PREROLL_S * 1e9, (begins, start)
        assert begins >= start["start_ns"] - (PREROLL_S + 1.5) * 1e9, (begins, start)
        # ... to past its last frame, postroll_s after it at most (a frame's slack)
        assert ends >= end["capture_ns"], (ends, end)
        assert ends <= end["capture_ns"] + (POSTROLL_S + 0.5) * 1e9, (ends, end)
        assert len(times) >= 25 * (ends - begins) / 1e9, "30 fps as the camera sent it"

        # served by the collector, a range at a time (a browser's video element seeks)
        request = urllib.request.Request("http://127.0.0.1:{}{}".format(port, clip["url"]),
                                         headers={"Range": "bytes=0-99"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 206 and len(answer.read()) == 100
        print("\nclip {}: {:.2f} s before the event's first frame to {:.2f} s after its "
              "last, {} packets".format(clip["name"], (start["start_ns"] - begins) / 1e9,
                                        (ends - end["capture_ns"]) / 1e9, len(times)))
    finally:
        sub.close()
        broker.stop()
        camera.close()
