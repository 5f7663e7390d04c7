"""The ``mqtt`` output against a real broker: Debian's mosquitto, started
and stopped by the tests, and a real subscriber (paho-mqtt). Events arrive
as the tracker makes them, nothing is lost while the broker is away or
when the collector is killed, and the pipeline never waits for the broker."""

import json
import os
import pwd
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from conftest import SRC, free_port, need_module, wait_until
from vidpipe import wire
from vidpipe.config import config_from_dict
from vidpipe.events import Tracker
from vidpipe.ordering import OK, Entry

mqtt = need_module("paho.mqtt.client")  # Debian: python3-paho-mqtt (./dev test installs it)
MOSQUITTO = "/usr/sbin/mosquitto"


class Broker:
    """mosquitto on a port of its own, with a persistent store (so a
    subscriber's session survives a restart, as on a real installation)."""

    def __init__(self, root: Path) -> None:
        if not os.path.exists(MOSQUITTO):
            pytest.fail("mosquitto is not installed (./dev test installs it)")
        self.port = free_port()
        self.root = root
        conf = root / "mosquitto.conf"
        # as root, mosquitto would switch to its own user, which cannot write
        # its store into the test's directory: stay who we are
        user = "user {}\n".format(pwd.getpwuid(os.geteuid()).pw_name)
        conf.write_text("listener {} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                        "persistence_location {}/\nautosave_interval 1\n"
                        "log_dest stderr\n{}".format(self.port, root, user))
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.root / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import socket

        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                return False

        wait_until(up, 10, "mosquitto listening")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # saves its store
            self.proc.wait(10)
            self.proc = None


class Subscriber:
    """A real client on PREFIX/#, QoS 1, with a session that outlives its
    connection (what Home Assistant does)."""

    def __init__(self, port: int, prefix: str = "vidpipe",
                 client_id: str = "test-subscriber") -> None:
        self.got: List[Tuple[str, Any, bool]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(client_id=client_id, clean_session=False)
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe(prefix + "/#", qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._message
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the test subscriber could not subscribe"

    def _message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        payload = msg.payload.decode()
        with self.lock:
            self.got.append((msg.topic, json.loads(payload) if payload.startswith("{")
                             else payload, bool(msg.retain)))

    def events(self) -> List[Dict[str, Any]]:
        with self.lock:
            return [p for t, p, _r in self.got if t.endswith("/events")]

    def on(self, topic: str) -> List[Any]:
        with self.lock:
            return [p for t, p, _r in self.got if t == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    yield b
    b.stop()


def collector_config(tmp_path: Path, port: int, **extra: Any) -> Any:
    cc = dict({"outputs": ["mqtt"], "mqtt_port": port, "spool_dir": str(tmp_path / "spool"),
               "events_min_frames": 2, "events_end_after_s": 0.3, "state_hz": 2.0}, **extra)
    return config_from_dict({"collector": cc}).collector


def motion_entry(seq: int, on: bool, capture_ns: int) -> Entry:
    head = wire.Header(wire.RESULT, "cam0", 1, seq, capture_ns)
    meta = {"motion": {"boxes": [[seq % 50, 1, 8, 8]] if on else [], "fraction": 0.02}}
    return Entry(seq=seq, status=OK, arrived=0.0, message=wire.Message(head, meta))


def pattern(frames: int) -> List[bool]:
    """Motion in bursts: 12 frames on, 18 off (400 ms at 30 fps > end_after_s)."""
    return [n % 30 < 12 for n in range(frames)]


def expected(frames: int) -> List[Tuple[str, int]]:
    tracker = Tracker(2, 0.3, 5.0)
    out = []
    for seq, on in enumerate(pattern(frames)):
        for e in tracker.feed("cam0", seq, seq * 33_333_333, motion_entry(seq, on, 0)
                              .message.meta):
            out.append((e["type"], e["seq"]))
    return out


def feed(output: Any, frames: int, start: int = 0, fps: float = 0.0) -> List[float]:
    """Emit frames ``start``.. as the collector would; the time each emit took."""
    took = []
    on = pattern(start + frames)
    for seq in range(start, start + frames):
        began = time.perf_counter()
        output.emit("cam0", motion_entry(seq, on[seq], seq * 33_333_333), 1.0)
        took.append(time.perf_counter() - began)
        if fps:
            time.sleep(1.0 / fps)
    return took


def test_events_state_and_availability_reach_a_subscriber(broker: Broker,
                                                          tmp_path: Path) -> None:
    from vidpipe.outputs.mqtt import MqttOutput

    sub = Subscriber(broker.port)
    hass = Subscriber(broker.port, prefix="homeassistant", client_id="hass")
    output = MqttOutput(collector_config(tmp_path, broker.port, mqtt_discovery=True),
                        ["cam0"])
    try:
        wait_until(lambda: output.connected, 10, "connected")
        # Home Assistant discovery: retained, one config per entity, on connect
        wait_until(lambda: len(hass.got) >= 5, 10, "discovery configs")
        configs = {t: p for t, p, _r in hass.got}
        assert "homeassistant/binary_sensor/vidpipe_cam0/motion/config" in configs
        assert configs["homeassistant/binary_sensor/vidpipe_cam0/motion/config"][
            "state_topic"] == "vidpipe/cam0/state"
        hass.close()
        feed(output, 300, fps=300)
        output.end_of_stream("cam0")
        want = expected(300)
        wait_until(lambda: len(sub.events()) >= len(want), 15, "all events")
        got = [(e["type"], e["seq"]) for e in sub.events()]
        assert got == want  # in order, nothing lost, nothing extra
        starts = [e for e in sub.events() if e["type"] == "start"]
        ends = [e for e in sub.events() if e["type"] == "end"]
        assert [s["id"] for s in starts] == [e["id"] for e in ends]  # pairs
        assert all(e["v"] == 1 and e["camera"] == "cam0" and e["label"] == "motion"
                   for e in sub.events())
        state = sub.on("vidpipe/cam0/state")
        assert state and state[-1]["camera"] == "cam0" and state[-1]["processed"] > 0
        assert [s["processed"] for s in state] == sorted(s["processed"] for s in state)
        late = Subscriber(broker.port, client_id="late")  # the state is retained
        wait_until(lambda: late.on("vidpipe/cam0/state"), 10, "retained state")
        assert late.got[-1][2] or any(r for _t, _p, r in late.got)
        late.close()
        assert sub.on("vidpipe/availability")[:1] == ["online"]
        status = output.status()
        assert status["broker"] == "connected" and status["acked"] >= len(want)
        assert status["depth"] == 0  # everything acknowledged has left the spool
        from vidpipe.outputs import metrics

        text = metrics.render([{"role": "collector", "name": "main", "alive": True,
                                "output_status": {"mqtt": status}}])
        labels = 'name="main",output="mqtt",role="collector"'
        assert "vidpipe_broker_connected{%s} 1" % labels in text
        assert "vidpipe_spool_messages{%s} 0" % labels in text
        assert 'vidpipe_broker_messages_total{%s,what="acked"} %d' % (
            labels, status["acked"]) in text
    finally:
        output.close()
    wait_until(lambda: sub.on("vidpipe/availability")[-1:] == ["offline"], 10, "offline")
    sub.close()


@pytest.mark.once  # 30 s of waiting; the floor suites run the rest of this file
def test_a_broker_away_for_30_s_loses_nothing_and_slows_nothing(broker: Broker,
                                                                tmp_path: Path) -> None:
    from vidpipe.outputs.mqtt import MqttOutput

    sub = Subscriber(broker.port)
    output = MqttOutput(collector_config(tmp_path, broker.port))
    try:
        wait_until(lambda: output.connected, 10, "connected")
        wait_until(lambda: bool(sub.on("vidpipe/availability")), 10, "subscriber")
        before = feed(output, 150, fps=30)
        broker.stop()
        away = time.monotonic()
        during = feed(output, 900, start=150, fps=30)  # 30 s of frames with no broker
        wait_until(lambda: output.status()["depth"] > 0, 5, "spooled")
        spooled = output.status()["depth"]
        broker.start()
        back = time.monotonic()
        after = feed(output, 150, start=1050, fps=30)
        output.end_of_stream("cam0")
        want = expected(1200)
        wait_until(lambda: len({(e["id"], e["type"], e["seq"]) for e in sub.events()})
                   >= len(want), 30, "every event after the broker came back")
        events = sub.events()
        unique = []
        for e in events:  # at least once: a repeat carries the same id, type and seq
            key = (e["type"], e["seq"])
            if not unique or unique[-1] != key:
                if key not in unique:
                    unique.append(key)
        assert unique == want
        assert len(events) - len(unique) <= 100  # only what was in flight may repeat
        print("broker away {:.0f} s, {} message(s) spooled meanwhile; emit p99 before "
              "{:.3f} ms, while away {:.3f} ms, after {:.3f} ms".format(
                  back - away, spooled, *(1000 * sorted(t)[int(len(t) * 0.99)]
                                         for t in (before, during, after))))
        assert max(during) < 0.05  # the collector's thread never waits for the broker
    finally:
        output.close()
        sub.close()


KILLED = """
import sys, time
from vidpipe import wire
from vidpipe.config import config_from_dict
from vidpipe.ordering import OK, Entry
from vidpipe.outputs.mqtt import MqttOutput
cc = config_from_dict({"collector": {"outputs": ["mqtt"], "mqtt_port": int(sys.argv[2]),
    "spool_dir": sys.argv[1], "events_min_frames": 2, "events_end_after_s": 0.3}}).collector
output = MqttOutput(cc)
for seq in range(300):  # the same motion pattern as the test's
    meta = {"motion": {"boxes": [[seq % 50, 1, 8, 8]] if seq % 30 < 12 else [],
                       "fraction": 0.02}}
    head = wire.Header(wire.RESULT, "cam0", 1, seq, seq * 33_333_333)
    output.emit("cam0", Entry(seq=seq, status=OK, arrived=0.0,
                              message=wire.Message(head, meta)), 1.0)
while output.status()["queued"] > output.status()["depth"] + 10 or \
        output.status()["depth"] < 20:  # in the spool: every event fsynced
    time.sleep(0.05)
print(output.status()["depth"], flush=True)
time.sleep(60)
"""


def test_events_spooled_by_a_killed_collector_are_delivered_after_restart(
        broker: Broker, tmp_path: Path) -> None:
    from vidpipe.outputs.mqtt import MqttOutput

    sub = Subscriber(broker.port)
    time.sleep(1.5)  # the broker's store has the subscriber's session (autosave 1 s)
    broker.stop()  # the broker is away while the collector runs and dies
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(tmp_path / "spool" / "x"),
                             str(broker.port)],
                            stdout=subprocess.PIPE, universal_newlines=True,
                            env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert proc.stdout is not None
    spooled = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    broker.start()
    output = MqttOutput(collector_config(tmp_path / "spool", broker.port,
                                         spool_dir=str(tmp_path / "spool" / "x")))
    try:
        want = expected(300)
        try:
            wait_until(lambda: [(e["type"], e["seq"]) for e in sub.events()] == want, 20,
                       "the dead collector's events")
        except AssertionError:
            raise AssertionError("got {} of {}: {}; output {}".format(
                len(sub.events()), len(want), sub.got[:6],
                output.status())) from None
        assert spooled >= 20 and output.status()["depth"] == 0
    finally:
        output.close()
        sub.close()


def test_a_real_pipeline_publishes_exactly_the_events_its_record_implies(
        broker: Broker, pipeline: Any) -> None:
    """Decoder -> 2 handlers (motion) -> collector with jsonl and mqtt: the
    subscriber's events are those a tracker makes from the JSONL record."""
    from helpers import camera, wait_exit

    sub = Subscriber(broker.port)
    pipeline.write_config({
        "pipeline": {"dispatch": "by-camera"},
        "cameras": {"cam0": camera(300, 320, 240, wait=2)},
        "handlers": {"stages": ["motion"]},
        "stage": {"motion": {"min_area": 20}},
        "collector": {"outputs": ["jsonl", "mqtt"], "exit_on_eos": True,
                      "mqtt_port": broker.port, "spool_dir": str(pipeline.root / "spool"),
                      "events_min_frames": 2, "events_end_after_s": 0.2},
    })
    collector = pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    pipeline.start("handler", "2")
    decoder = pipeline.start("decoder", "cam0")
    try:
        assert wait_exit(decoder, 60, pipeline) == 0
        assert wait_exit(collector, 60, pipeline) == 0
        tracker = Tracker(2, 0.2, 5.0)
        implied = []
        for rec in pipeline.results():
            if rec["status"] == "ok" and not rec.get("late"):
                for e in tracker.feed("cam0", rec["seq"], rec["capture_ns"], rec["meta"]):
                    implied.append((e["type"], e["seq"], e["id"]))
        implied += [(e["type"], e["seq"], e["id"]) for e in tracker.end_all("cam0")]
        assert any(t == "start" for t, _s, _i in implied), "the test pattern made no motion"
        wait_until(lambda: len(sub.events()) >= len(implied), 15, "every event")
        assert [(e["type"], e["seq"], e["id"]) for e in sub.events()] == implied
        print("{} events from {} frames".format(len(implied), len(pipeline.results())))
    finally:
        sub.close()
