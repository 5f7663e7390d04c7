"""The ``mqtt`` output against a real broker: Debian's mosquitto, started
and stopped by the tests, and a real subscriber (paho-mqtt). Events arrive
as the tracker makes them, nothing is lost while the broker is away or
when the collector is killed, and the pipeline never waits for the broker."""

import json
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest

from brokers import (Mosquitto, Rabbit, Subscriber, collector_config, expected,
                     expected_hostile_then_good, feed, feed_hostile_then_good, spool_hostile_records,
                     killed_collector, make_tls, unique_in_order)
from conftest import ROOT, need_module, wait_until
from vidpipe import names
from vidpipe.outputs.events import Tracker

mqtt = need_module("paho.mqtt.client")  # Debian: python3-paho-mqtt (./dev test installs it)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = Mosquitto(tmp_path)
    yield b
    b.stop()


def test_events_state_and_availability_reach_a_subscriber(broker: Mosquitto,
                                                          tmp_path: Path) -> None:
    from vidpipe.outputs.mqtt import MqttOutput

    sub = Subscriber(broker.port)
    hass = Subscriber(broker.port, prefix="homeassistant", client_id="hass")
    output = MqttOutput(collector_config(tmp_path / "spool", "mqtt", broker.port,
                                         mqtt_discovery=True), ["cam0"])
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
        assert all(e["v"] == 2 and e["camera"] == "cam0" and e["label"] == "motion"
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
        from vidpipe.status import metrics

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


def test_hostile_labels_and_refused_records_never_stop_delivery(broker: Mosquitto,
                                                              tmp_path: Path) -> None:
    """Issue 24: with snapshots on, a label containing ``#`` made a topic paho
    refuses, and the spooled record blocked the spool for good. Labels are
    now of the label rule before they reach a topic, and a record paho
    refuses anyway (left by an older version) is counted and let go."""
    from vidpipe.outputs.mqtt import MqttOutput

    spool_hostile_records(tmp_path / "spool", "mqtt")
    sub = Subscriber(broker.port)
    output = MqttOutput(collector_config(tmp_path / "spool", "mqtt", broker.port,
                                         events_snapshot_kb=4), ["cam0"])
    try:
        feed_hostile_then_good(output)
        output.end_of_stream("cam0")
        want = expected_hostile_then_good()
        wait_until(lambda: len(sub.events()) >= len(want), 20, "every event")
        assert [(e["type"], e["label"], e["seq"]) for e in sub.events()] == want
        with sub.lock:
            snaps = [t for t, _p, _r in sub.got if t.endswith("/snapshot")]
        assert len(set(snaps)) >= 8
        assert all(names.label(t.split("/")[2]) == t.split("/")[2] for t in snaps)
        status = output.status()
        assert status["refused"] == 3 and status["broker"] == "connected"
        assert status["depth"] == 0 and not status.get("errors"), status
    finally:
        output.close()
        sub.close()


@pytest.mark.once  # 30 s of waiting; the floor suites run the rest of this file
def test_a_broker_away_for_30_s_loses_nothing_and_slows_nothing(broker: Mosquitto,
                                                                tmp_path: Path) -> None:
    from vidpipe.outputs.mqtt import MqttOutput

    sub = Subscriber(broker.port)
    output = MqttOutput(collector_config(tmp_path / "spool", "mqtt", broker.port))
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
        unique = unique_in_order(events)
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


def test_events_spooled_by_a_killed_collector_are_delivered_after_restart(
        broker: Mosquitto, tmp_path: Path) -> None:
    from vidpipe.outputs.mqtt import MqttOutput

    sub = Subscriber(broker.port)
    time.sleep(1.5)  # the broker's store has the subscriber's session (autosave 1 s)
    broker.stop()  # the broker is away while the collector runs and dies
    spooled = killed_collector("mqtt", tmp_path / "spool" / "x", broker.port)
    broker.start()
    output = MqttOutput(collector_config(tmp_path / "spool" / "x", "mqtt", broker.port))
    try:
        want = expected(300)
        try:
            wait_until(lambda: [(e["type"], e["seq"]) for e in sub.events()] == want, 20,
                       "the dead collector's events")
        except AssertionError:
            raise AssertionError("got {} of {}: {}; output {}".format(
                len(sub.events()), len(want), sub.got[:6],
                output.status())) from None
        assert spooled >= 20
        # delivered; the acknowledgements may still be on their way back
        wait_until(lambda: output.status()["depth"] == 0, 15, "the spool emptied by the acks")
    finally:
        output.close()
        sub.close()


def test_a_real_pipeline_publishes_exactly_the_events_its_record_implies(
        broker: Mosquitto, pipeline: Any) -> None:
    """Decoder -> 2 handlers (motion) -> collector with jsonl, mqtt and amqp:
    each broker's subscriber gets the events a tracker makes from the JSONL
    record (rabbitmq-server too: this is where the collector builds both)."""
    from helpers import camera, wait_exit

    sub = Subscriber(broker.port)
    rabbit = Rabbit(pipeline.root / "rabbit")
    pipeline.write_config({
        "pipeline": {"dispatch": "by-camera"},
        "cameras": {"cam0": camera(300, 320, 240, wait=2)},
        "handlers": {"stages": ["motion"]},
        "stage": {"motion": {"min_area": 20}},
        "collector": {"outputs": ["jsonl", "mqtt", "amqp"], "exit_on_eos": True,
                      "mqtt_port": broker.port, "amqp_port": rabbit.port,
                      "spool_dir": str(pipeline.root / "spool"),
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
        wait_until(lambda: len(sub.events()) >= len(implied), 15, "every MQTT event")
        assert [(e["type"], e["seq"], e["id"]) for e in sub.events()] == implied
        amqp = [(e["type"], e["seq"], e["id"]) for e in queued_events(rabbit.port)]
        assert amqp == implied  # the collector drained the spool before it exited
        print("{} events from {} frames".format(len(implied), len(pipeline.results())))
    finally:
        sub.close()
        rabbit.close()


def queued_events(port: int) -> List[Dict[str, Any]]:
    """What waits in the amqp output's events queue."""
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    try:
        channel, out = conn.channel(), []
        while True:
            method, _props, body = channel.basic_get("vidpipe.events", auto_ack=True)
            if method is None:
                return out
            out.append(json.loads(body.decode()))
    finally:
        conn.close()


def test_tls_and_a_password_from_a_credentials_file(tmp_path: Path) -> None:
    """mosquitto with TLS only and a password file: the output connects with
    mqtt_tls, mqtt_ca_file and mqtt_credentials_file, and events arrive; a
    wrong password is named in its status and nothing is lost meanwhile."""
    from vidpipe.outputs.mqtt import MqttOutput

    ca, cert, key = make_tls(tmp_path)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(tmp_path / "passwd"), "vidpipe",
                    "s3cret"], check=True)
    broker = Mosquitto(tmp_path, secure="cafile {}\ncertfile {}\nkeyfile {}\n"
                       "allow_anonymous false\npassword_file {}\n".format(
                           ca, cert, key, tmp_path / "passwd"))
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("vidpipe\nnot-it\n")
    right = tmp_path / "mqtt.secret"
    right.write_text("vidpipe\ns3cret\n")
    for secret in (wrong, right):
        secret.chmod(0o640)
    sub = mqtt.Client(client_id="tls-subscriber", clean_session=True)
    sub.tls_set(ca_certs=str(ca))
    sub.username_pw_set("vidpipe", "s3cret")
    got: List[Dict[str, Any]] = []
    sub.on_connect = lambda c, *_: c.subscribe("vidpipe/+/events", qos=1)
    sub.on_message = lambda _c, _u, msg: got.append(json.loads(msg.payload.decode()))
    sub.connect("127.0.0.1", broker.port)
    sub.loop_start()
    try:
        # the system's CAs do not know the test CA: named, not "connecting" for ever
        untrusted = MqttOutput(collector_config(tmp_path / "spool-untrusted", "mqtt",
                                                broker.port, mqtt_tls=True))
        try:
            if hasattr(mqtt.Client, "on_connect_fail"):  # paho >= 1.6 says a connect failed
                wait_until(lambda: untrusted.state.startswith("refused"), 15, "untrusted")
                assert untrusted.state == "refused: TLS certificate not trusted (self-signed " \
                    "certificate in certificate chain; mqtt.ca_file)", untrusted.state
            else:  # paho 1.4 (Ubuntu 20.04) retries without a word
                time.sleep(2)
                assert untrusted.state == "connecting" and not untrusted.connected
        finally:
            untrusted.close()
        refused = MqttOutput(collector_config(tmp_path / "spool-wrong", "mqtt", broker.port,
                                              mqtt_tls=True, mqtt_ca_file=str(ca),
                                              mqtt_credentials_file=str(wrong)))
        try:
            wait_until(lambda: refused.state.startswith("refused"), 15, "refused")
            assert "not authori" in refused.state.lower(), refused.state
            feed(refused, 60)
            time.sleep(0.5)
            assert refused.status()["depth"] > 0 and not refused.connected  # kept
            assert "not-it" not in json.dumps(refused.status())
        finally:
            refused.close()
        output = MqttOutput(collector_config(tmp_path / "spool", "mqtt", broker.port,
                                             mqtt_tls=True, mqtt_ca_file=str(ca),
                                             mqtt_credentials_file=str(right)))
        try:
            wait_until(lambda: output.connected, 15, "connected over TLS")
            feed(output, 120)
            output.end_of_stream("cam0")
            want = expected(120)
            wait_until(lambda: len(got) >= len(want), 15, "events over TLS")
            assert [(e["type"], e["seq"]) for e in got] == want
        finally:
            output.close()
    finally:
        sub.loop_stop()
        sub.disconnect()
        broker.stop()


HASS_PYTHON = ROOT / ".venv-hass" / "bin" / "python"


@pytest.mark.once  # .venv-hass (./dev test makes it): the main suite only
def test_discovery_passes_home_assistants_own_validation(broker: Mosquitto,
                                                         tmp_path: Path) -> None:
    """The retained discovery configs, as a Home Assistant subscribing now gets
    them, through Home Assistant's own code (2024.1: its discovery topic
    matcher and each platform's DISCOVERY_SCHEMA); a planted bad config is
    refused, so the check can fail."""
    from vidpipe.outputs.mqtt import MqttOutput

    if not HASS_PYTHON.exists():
        pytest.fail("{} is missing: ./dev test makes it (Home Assistant from PyPI, "
                    "tests/hass/requirements.txt)".format(HASS_PYTHON))
    output = MqttOutput(collector_config(tmp_path / "spool", "mqtt", broker.port,
                                         mqtt_discovery=True), ["cam0", "yard.gate"],
                        areas={"cam0": (["hall"], ["front-door"])})  # 3 sensors more
    try:
        wait_until(lambda: output.connected, 10, "connected")
        messages: List[List[str]] = []
        deadline = time.monotonic() + 20
        while len(messages) < 13 and time.monotonic() < deadline:
            # a subscriber that comes while the output is still publishing
            # gets some configs live, not retained: it comes again, as a Home
            # Assistant started later would
            hass = Subscriber(broker.port, prefix="homeassistant", client_id="hass-late")
            try:
                wait_until(lambda: len(hass.got) >= 13, 10, "discovery configs")
            finally:
                hass.close()
            messages = [[topic, json.dumps(payload)] for topic, payload, retained in hass.got
                        if retained]
            if len(messages) < 13:
                time.sleep(0.5)
    finally:
        output.close()
    assert len(messages) == 13, [m[0] for m in messages]
    planted = dict(json.loads(messages[-1][1]), state_class="sometimes")
    messages.append(["homeassistant/sensor/vidpipe_cam0/planted/config", json.dumps(planted)])
    out = subprocess.run([str(HASS_PYTHON), str(ROOT / "tests" / "hass" / "check.py")],
                         input=json.dumps(messages), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    verdicts = [json.loads(line) for line in out.stdout.splitlines()]
    assert [v["topic"] for v in verdicts] == [m[0] for m in messages]
    assert [v for v in verdicts[:-1] if not v["ok"]] == []
    assert not verdicts[-1]["ok"] and "state_class" in verdicts[-1]["error"], verdicts[-1]
    print("Home Assistant 2024.1 takes all {} discovery configs".format(len(messages) - 1))


def test_a_tracked_camera_publishes_its_objects_zones_and_crossings(
        broker: Mosquitto, pipeline: Any) -> None:
    """Issue 27, end to end: the test pattern's white square (7 px right, 3 px
    down a frame) through the motion stage to a collector that tracks it,
    with a door line drawn top to bottom at x = 200 and a zone over the right
    of the picture. The square's first pass crosses the line once, rightwards
    ("in"), and enters the zone; the JSONL record carries the track IDs, and
    the MQTT subscriber gets the object, zone and line events the record
    implies, each once, with schema version 2."""
    from helpers import camera, wait_exit

    sub = Subscriber(broker.port)
    cam = camera(60, 320, 240, wait=1)
    cam["lines"] = {"door": {"points": [[200, 0], [200, 240]]}}
    cam["zones"] = {"right": {"points": [[210, 0], [320, 0], [320, 240], [210, 240]]}}
    pipeline.write_config({
        "cameras": {"cam0": cam},
        "handlers": {"stages": ["motion"]},
        "stage": {"motion": {"min_area": 20}},
        "collector": {"outputs": ["jsonl", "mqtt"], "exit_on_eos": True,
                      "mqtt_port": broker.port, "spool_dir": str(pipeline.root / "spool")},
    })
    collector = pipeline.start("collector", "main")
    pipeline.start("handler", "1")
    decoder = pipeline.start("decoder", "cam0")
    try:
        assert wait_exit(decoder, 60, pipeline) == 0
        assert wait_exit(collector, 60, pipeline) == 0
        ok = [r for r in pipeline.results() if r["status"] == "ok" and not r.get("late")]
        found = [e for r in ok for e in r["meta"]["areas"]]
        crossings = [(e["line"], e["direction"]) for e in found if e["type"] == "line"]
        assert crossings == [("door", "in")], found
        crosser = next(e["track"] for e in found if e["type"] == "line")
        assert [e["action"] for e in found if e["type"] == "zone" and e["track"] == crosser] \
            [:1] == ["enter"], found
        ids = {o["id"] for r in ok for o in r["meta"]["objects"]}
        assert crosser in ids
        # the square keeps one ID from its first box to the crossing
        frames_of = [r["seq"] for r in ok if any(o["id"] == crosser
                                                 for o in r["meta"]["objects"])]
        assert len(frames_of) >= 20, frames_of
        wait_until(lambda: any(e.get("type") == "object" and e.get("action") == "end"
                               and e.get("track") == crosser for e in sub.events()), 15,
                   "the crossing object's end")
        got = [e for e in sub.events() if e.get("type") in ("object", "zone", "line")]
        assert all(e["v"] == 2 and e["camera"] == "cam0" for e in got)
        assert [(e["type"], e["direction"]) for e in got if e["type"] == "line"] == \
            [("line", "in")]
        end = next(e for e in got if e["type"] == "object" and e["action"] == "end"
                   and e["track"] == crosser)
        assert end["crossed"] == [["door", "in"]] and end["zones"] == ["right"], end
        assert len({e["id"] for e in got}) == len(got)  # each once, ids unique
        print("objects: {} tracks, {} scene events, the crosser seen in {} frames".format(
            len(ids), len(got), len(frames_of)))
    finally:
        sub.close()
