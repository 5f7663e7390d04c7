"""10,000 hostile messages at every role's sockets while a camera runs: every
role stays up, each message is counted by reason exactly where it must be,
memory stays flat, and the real camera's frames keep flowing.

The messages (tests/adversarial/hostile.py) cover every kind, the four
encodings, part counts up to 2,000, names that are paths or carry newlines,
JPEG bombs, references to rings that are not there, int32 images for the
outputs and DROP reasons that would each make a new metrics label. A tap
gets 499 topics and a 16 KiB subscription. RSS growth per role is printed
(docs/performance.md quotes it)."""

import json
import random
import time
from collections import Counter
from typing import Any, Dict

import zmq

from brokers import Mosquitto, Rabbit
from conftest import fake_decoder, free_port, hostile_peers, http_get, wait_until
from hostile import small_jpeg, to_collector, to_decoder, to_handler

TOTAL = {"collector": 4000, "handlers": 3000, "decoder": 2500}  # + 500 to the tap
REFS = ("ring_unavailable", "bad_ring", "bad_ref")


def board(pipeline: Any, name: str) -> Dict[str, Any]:
    path = pipeline.runtime / "status" / (name + ".json")
    return json.loads(path.read_text()) if path.exists() else {}


def rss_mb(pid: int) -> float:
    with open("/proc/{}/status".format(pid)) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS for {}".format(pid))


def live_ok(pipeline: Any) -> int:
    return sum(1 for r in pipeline.results() if r["camera"] == "live" and r["status"] == "ok")


def test_ten_thousand_hostile_messages(pipeline: Any, tmp_path: Any, zmq_ctx: Any) -> None:
    port = free_port()
    (tmp_path / "mqtt").mkdir()
    mqtt_broker = Mosquitto(tmp_path / "mqtt")
    rabbit = Rabbit(tmp_path / "rabbit")
    pipeline.write_config({
        # frames are never too old to look at here, however long the flood takes
        "pipeline": {"max_frame_bytes": 4 << 20, "max_latency_ms": 60000},
        "cameras": {"live": {"source": "testsrc", "width": 160, "height": 120, "fps": 30,
                             "frames": 0, "wait_for_handlers": 2}},
        "handlers": {"stages": ["gray"]},
        "collector": {"outputs": ["jsonl", "preview", "record", "mqtt", "amqp"],
                      "metrics": True, "http_listen": "127.0.0.1:{}".format(port),
                      "record_dir": str(tmp_path / "rec"), "record_formats": ["mp4"],
                      "mqtt_port": mqtt_broker.port, "amqp_port": rabbit.port,
                      "spool_dir": str(tmp_path / "spool"), "events_snapshot_kb": 4,
                      "events_min_frames": 1, "events_end_after_s": 0.2},
    })
    try:
        flood(pipeline, tmp_path, zmq_ctx, port, mqtt_broker, rabbit)
    finally:
        mqtt_broker.stop()
        rabbit.close()


def pipeline_config(pipeline: Any) -> Any:
    from vidpipe.config import load_config

    return load_config(str(pipeline.config_path))


def good_events_after(pipeline: Any, mqtt_broker: Any, rabbit: Any) -> None:
    """After the flood, a camera's ordinary detections reach both brokers: no
    hostile label, size or name stopped a broker output."""
    import numpy as np
    import paho.mqtt.client as mqtt

    from vidpipe.link import wire

    got: list = []
    sub = mqtt.Client(client_id="flood-check")
    sub.on_connect = lambda c, *_: c.subscribe("vidpipe/after/events", qos=1)
    sub.on_message = lambda _c, _u, msg: got.append(json.loads(msg.payload))
    sub.connect("127.0.0.1", mqtt_broker.port)
    sub.loop_start()
    ctx = zmq.Context()
    push = ctx.socket(zmq.PUSH)
    push.connect(pipeline_config(pipeline).collector.connect)
    try:
        time.sleep(1)
        for seq in range(30):
            meta = {"handler": "1", "detections": [
                {"label": "person", "box": [1, 1, 4, 4], "confidence": 0.9}] if seq < 20 else []}
            push.send_multipart(wire.result_parts(np.zeros((12, 16, 3), np.uint8), meta,
                                                  "after", 1, seq, seq * 33_333_333))
        push.send_multipart(wire.control_parts(wire.EOS, {"read": 30}, "after", 1, 30, 0))
        wait_until(lambda: {e["type"] for e in got} >= {"start", "end"}, 30,
                   "the good camera's events over MQTT")
        assert all(e["label"] == "person" and e["camera"] == "after" for e in got)
        wait_until(lambda: rabbit_events(rabbit.port), 30, "the good events over AMQP")
    finally:
        push.close(linger=0)
        ctx.term()
        sub.loop_stop()
        sub.disconnect()


def rabbit_events(port: int) -> list:
    import pika

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
    try:
        channel = conn.channel()
        out = []
        while True:
            method, _props, body = channel.basic_get("vidpipe.events", auto_ack=True)
            if method is None:
                return [e for e in out if e["camera"] == "after" and e["label"] == "person"]
            out.append(json.loads(body))
    finally:
        conn.close()


def flood(pipeline: Any, tmp_path: Any, zmq_ctx: Any, port: int, mqtt_broker: Any,
          rabbit: Any) -> None:
    roles = {"collector-main": pipeline.start("collector", "main"),
             "handler-1": pipeline.start("handler", "1"),
             "handler-2": pipeline.start("handler", "2"),
             "decoder-live": pipeline.start("decoder", "live")}
    wait_until(lambda: live_ok(pipeline) > 30, 30, "frames from the live camera")
    # a viewer, so that the preview renders what arrives (int32 images included)
    http_get("http://127.0.0.1:{}/snapshot/live.jpg".format(port), timeout=10)
    time.sleep(2)
    before = {name: rss_mb(role.pid) for name, role in roles.items()}

    rng = random.Random(14)
    jpeg = small_jpeg()
    expect: Dict[str, Counter] = {"collector": Counter(), "handlers": Counter(),
                                  "decoder": Counter()}
    ctx = zmq_ctx
    started = time.monotonic()
    try:
        collector, decoder = hostile_peers(ctx, pipeline.runtime, "live")
        fake, peers = fake_decoder(ctx, pipeline.runtime, "fuzz", 2)
        fake.setsockopt(zmq.ROUTER_MANDATORY, 1)  # block on a full handler, never drop
        for sock in (collector, decoder, fake):
            sock.setsockopt(zmq.SNDTIMEO, 10000)
        for _ in range(TOTAL["collector"]):
            parts, reason = to_collector(rng, jpeg)
            collector.send_multipart(parts)
            expect["collector"][reason] += 1
        for n in range(TOTAL["handlers"]):
            parts, reason = to_handler(rng, jpeg)
            fake.send_multipart([peers[n % 2]] + parts)
            expect["handlers"][reason] += 1
            while fake.poll(0):  # credits and the like
                fake.recv_multipart()
        for _ in range(TOTAL["decoder"]):
            parts, reason = to_decoder(rng)
            decoder.send_multipart(parts)
            expect["decoder"][reason] += 1
        # the tap: 499 topics, then one 16 KiB subscription (over its part limit;
        # libzmq keeps subscriptions in a trie one level per byte, and the 4 MB
        # one of the audit overflows the stack of whoever stores it: this test's
        # own XSUB included, so the size here is smaller)
        tap = ctx.socket(zmq.XSUB)
        tap.connect("ipc://{}/tap-live.sock".format(pipeline.runtime))
        for n in range(499):
            tap.send(b"\x01topic-%d" % n)
        tap.send(b"\x01" + b"t" * (16 << 10))
        sent_in = time.monotonic() - started

        def counted(role: str) -> int:
            return sum((board(pipeline, role).get("malformed") or {}).values())

        malformed = {k: sum(v for r, v in c.items() if r not in ("ok", "image:bad_encoding"))
                     for k, c in expect.items()}
        def progress() -> Dict[str, int]:
            return {"collector": counted("collector-main"), "decoder": counted("decoder-live"),
                    "handlers": counted("handler-1") + counted("handler-2")}

        deadline = time.monotonic() + 60
        while any(progress()[k] < malformed[k] for k in malformed):
            assert time.monotonic() < deadline, "counted {} of {}; boards: {}".format(
                progress(), malformed, {n: board(pipeline, n).get("malformed") for n in roles})
            time.sleep(0.2)
        time.sleep(1.5)  # the boards are rewritten twice a second: take the final figures
    finally:
        ctx.destroy(linger=0)

    for name, role in roles.items():
        assert role.proc.poll() is None, "{} died:\n{}".format(name, role.output()[-3000:])
        out = role.output()
        assert "Traceback" not in out and "internal_error" not in out, out[-3000:]
    boards = {name: board(pipeline, name) for name in roles}
    got_collector = Counter(boards["collector-main"]["malformed"])
    got_decoder = Counter(boards["decoder-live"]["malformed"])
    got_handlers = Counter(boards["handler-1"]["malformed"]) + \
        Counter(boards["handler-2"]["malformed"])
    want_collector = Counter({r: n for r, n in expect["collector"].items()
                              if r not in ("ok", "image:bad_encoding")})
    assert got_collector == want_collector
    assert boards["collector-main"]["images_lost"].get("bad_encoding") == \
        expect["collector"]["image:bad_encoding"]
    assert not boards["collector-main"].get("output_errors")
    assert got_decoder == expect["decoder"]
    refs = sum(got_handlers.pop(r, 0) for r in REFS)
    want_handlers = Counter(expect["handlers"])
    assert refs == want_handlers.pop("ref")
    assert got_handlers == want_handlers

    # labels stay bounded: the DROP reasons became at most Tally.MAX_KEYS of them
    page = http_get("http://127.0.0.1:{}/metrics".format(port)).decode()
    evil = [line for line in page.splitlines()
            if line.startswith("vidpipe_frames_dropped_total") and 'camera="evil"' in line]
    assert 0 < len(evil) <= 65, len(evil)
    assert "\n{evil" not in page

    after = {name: rss_mb(role.pid) for name, role in roles.items()}
    growth = {name: round(after[name] - before[name], 1) for name in roles}
    print("\nhostile flood: {} messages in {:.1f} s; RSS before {} MB, growth {} MB".format(
        sum(TOTAL.values()) + 500, sent_in, {k: round(v) for k, v in before.items()}, growth))
    assert all(g < 64 for g in growth.values()), growth
    first = live_ok(pipeline)
    wait_until(lambda: live_ok(pipeline) > first + 30, 20,
               "the live camera's frames to keep flowing after the flood")
    status = board(pipeline, "collector-main")["output_status"]
    for name in ("mqtt", "amqp"):  # the hostile labels reached them, nothing stuck
        assert status[name]["broker"] == "connected" and not status[name].get("errors"), status
    good_events_after(pipeline, mqtt_broker, rabbit)
    assert roles["collector-main"].proc.poll() is None
