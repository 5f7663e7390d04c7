"""The ``amqp`` output against a real broker: Debian's rabbitmq-server,
started and stopped by the tests, read by a real consumer (pika). Events
wait in the output's durable queue, publisher confirms take a message out of
the spool, nothing is lost while the broker is away or when the collector is
killed, a full spool gives up results before events, a wrong password
is named, and TLS (amqp_tls, amqp_ca_file) is verified against the CA."""

import json
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple

import pytest

from brokers import (Rabbit, collector_config, expected, expected_hostile_then_good, feed,
                     feed_hostile_then_good, spool_hostile_records, killed_collector, make_tls,
                     unique_in_order)
from conftest import need_module, wait_until
from vidpipe import names

pika = need_module("pika")  # Debian: python3-pika (./dev test installs it)
EVENTS = "vidpipe.events"  # the queue the output declares for events


@pytest.fixture
def rabbit(tmp_path: Path) -> Iterator[Rabbit]:
    broker = Rabbit(tmp_path / "rabbit")
    yield broker
    broker.close()


class Consumer:
    """Reads queues with basic_get, each call on a connection of its own (so
    it needs nothing from a broker that is away between calls). ``tap`` is a
    durable queue bound to every routing key of the exchange."""

    def __init__(self, port: int, tap: bool = True) -> None:
        self.port = port
        self.got: Dict[str, List[Tuple[str, Any, Any]]] = {}
        if tap:
            with self.channel() as ch:
                ch.exchange_declare("vidpipe", exchange_type="topic", durable=True)
                ch.queue_declare("test.tap", durable=True)
                ch.queue_bind("test.tap", "vidpipe", routing_key="#")

    def channel(self) -> Any:
        consumer = self

        class _Open:
            def __enter__(self) -> Any:
                self.conn = pika.BlockingConnection(pika.ConnectionParameters(
                    "127.0.0.1", consumer.port, connection_attempts=1, socket_timeout=3))
                return self.conn.channel()

            def __exit__(self, *_: Any) -> None:
                self.conn.close()

        return _Open()

    def read(self, queue: str) -> List[Tuple[str, Any, Any]]:
        """Everything that queue has received so far (routing key, body, properties)."""
        got = self.got.setdefault(queue, [])
        with self.channel() as ch:
            while True:
                method, props, body = ch.basic_get(queue, auto_ack=True)
                if method is None:
                    break
                if props.content_type == "application/json":
                    body = json.loads(body.decode())
                got.append((method.routing_key, body, props))
        return got

    def events(self, queue: str = EVENTS) -> List[Dict[str, Any]]:
        return [body for key, body, _p in self.read(queue) if key.endswith(".events")]


def test_events_state_snapshots_and_results_reach_a_consumer(rabbit: Rabbit,
                                                             tmp_path: Path) -> None:
    import cv2
    import numpy as np

    from vidpipe.outputs.amqp import AmqpOutput

    consumer = Consumer(rabbit.port)
    output = AmqpOutput(collector_config(tmp_path / "spool", "amqp", rabbit.port,
                                         amqp_results=True, events_snapshot_kb=4), ["cam0"])
    try:
        wait_until(lambda: output.connected, 15, "connected")
        feed(output, 300, fps=300, image=True)
        output.end_of_stream("cam0")
        want = expected(300)
        wait_until(lambda: len(consumer.events()) >= len(want), 20, "every event")
        events = consumer.events()
        assert [(e["type"], e["seq"]) for e in events] == want  # in order, none lost or extra
        starts = [e for e in events if e["type"] == "start"]
        assert [s["id"] for s in starts] == [e["id"] for e in events if e["type"] == "end"]
        tap = consumer.read("test.tap")
        by_key: Dict[str, List[Any]] = {}
        for key, body, props in tap:
            by_key.setdefault(key, []).append((body, props))
        # every frame's record, in order, as the jsonl output writes it
        results = [body for body, _p in by_key["cam0.results"]]
        assert [r["seq"] for r in results] == list(range(300))
        assert all(r["v"] == 2 and r["status"] == "ok" and "motion" in r["meta"]
                   for r in results)
        # events carry their id as message_id; every message is persistent
        assert [p.message_id for _b, p in by_key["cam0.events"]] == [e["id"] for e in events]
        assert all(p.delivery_mode == 2 for _k, _b, p in tap)
        state = [body for body, _p in by_key["cam0.state"]]
        assert state and state[-1]["processed"] > 0
        # a snapshot with each start and each better update: the frame it names
        snaps = by_key["cam0.snapshot.motion"]
        assert len(snaps) >= len(starts)
        for body, props in snaps:
            assert props.content_type == "image/jpeg" and len(body) <= 4 * 1024
            image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_GRAYSCALE)
            seq = props.headers["seq"]
            assert image is not None and abs(int(image.mean()) - seq % 256) <= 2
            assert props.headers["event_id"] in {s["id"] for s in starts}
        status = output.status()
        assert status["broker"] == "connected" and status["depth"] == 0
        assert status["acked"] == status["published"] >= 300 + len(want)
    finally:
        output.close()


@pytest.mark.once  # 30 s of waiting; the floor suites run the rest of this file
def test_a_broker_away_for_30_s_loses_nothing_and_slows_nothing(rabbit: Rabbit,
                                                                tmp_path: Path) -> None:
    from vidpipe.outputs.amqp import AmqpOutput

    consumer = Consumer(rabbit.port, tap=False)
    output = AmqpOutput(collector_config(tmp_path / "spool", "amqp", rabbit.port))
    try:
        wait_until(lambda: output.connected, 15, "connected")
        before = feed(output, 150, fps=30)
        rabbit.stop()
        away = time.monotonic()
        during = feed(output, 900, start=150, fps=30)  # 30 s of frames with no broker
        spooled = output.status()["depth"]
        assert not output.connected and spooled > 0
        assert "disconnected" in output.status()["broker"] or \
            "unreachable" in output.status()["broker"]
        rabbit.start()
        back = time.monotonic()
        after = feed(output, 150, start=1050, fps=30)
        output.end_of_stream("cam0")
        want = expected(1200)
        wait_until(lambda: len(unique_in_order(consumer.events())) >= len(want), 30,
                   "every event after the broker came back")
        events = consumer.events()
        assert unique_in_order(events) == want
        assert len(events) - len(want) <= 1  # only one is ever unconfirmed at a time
        print("broker away {:.0f} s (restart took {:.1f} s), {} message(s) spooled meanwhile;"
              " emit p99 before {:.3f} ms, while away {:.3f} ms, after {:.3f} ms".format(
                  back - away, rabbit.started_s, spooled,
                  *(1000 * sorted(t)[int(len(t) * 0.99)] for t in (before, during, after))))
        assert max(during) < 0.05  # the collector's thread never waits for the broker
    finally:
        output.close()


def test_events_spooled_by_a_killed_collector_are_delivered_after_restart(
        rabbit: Rabbit, tmp_path: Path) -> None:
    from vidpipe.outputs.amqp import AmqpOutput

    consumer = Consumer(rabbit.port, tap=False)
    with consumer.channel() as ch:  # the output's queue exists before it ever ran
        ch.queue_declare(EVENTS, durable=True)
    rabbit.stop()  # the broker is away while the collector runs and dies
    spooled = killed_collector("amqp", tmp_path / "spool", rabbit.port)
    rabbit.start()
    output = AmqpOutput(collector_config(tmp_path / "spool", "amqp", rabbit.port))
    try:
        want = expected(300)
        wait_until(lambda: len(consumer.events()) >= len(want), 20,
                   "the dead collector's events")
        assert [(e["type"], e["seq"]) for e in consumer.events()] == want
        assert spooled >= 20
        # delivered; the acknowledgements may still be on their way back
        wait_until(lambda: output.status()["depth"] == 0, 15, "the spool emptied by the acks")
    finally:
        output.close()


def test_a_full_spool_gives_up_results_before_events(rabbit: Rabbit, tmp_path: Path) -> None:
    """1 MB of spool, the broker away, every frame's result on: results go
    first (counted), every event is kept and delivered when it returns."""
    from vidpipe.outputs.amqp import AmqpOutput

    consumer = Consumer(rabbit.port, tap=False)
    with consumer.channel() as ch:
        ch.queue_declare(EVENTS, durable=True)
    rabbit.stop()
    output = AmqpOutput(collector_config(tmp_path / "spool", "amqp", rabbit.port,
                                         amqp_results=True, spool_max_mb=1, state_hz=0))
    try:
        feed(output, 6000)  # ~6000 results of ~250 bytes: more than 1 MB
        output.end_of_stream("cam0")
        wait_until(lambda: output.queue.empty(), 60, "everything spooled")  # a bound
        time.sleep(0.3)
        status = output.status()
        print("spool full: {}".format(status))
        assert status["dropped"].get("result", 0) > 1000
        assert status["dropped"].get("event", 0) == 0
        assert status["bytes"] <= 1024 * 1024
        rabbit.start()
        want = expected(6000)
        wait_until(lambda: len(consumer.events()) >= len(want), 60, "every event")
        assert [(e["type"], e["seq"]) for e in consumer.events()] == want
    finally:
        output.close()


def test_hostile_labels_and_refused_records_never_stop_delivery(rabbit: Rabbit,
                                                              tmp_path: Path) -> None:
    """Issue 24: a label of 64 four-byte characters made an event id over
    AMQP's 255-byte message_id; pika refused it, the output took that for a
    lost connection and retried the same spooled record forever. Now labels
    are brought to the label rule before they reach a routing key or an id,
    and a record pika refuses anyway (left in the spool by an older version)
    is counted, logged and let go: every later event arrives."""
    from vidpipe.outputs.amqp import AmqpOutput

    spool_hostile_records(tmp_path / "spool", "amqp")
    consumer = Consumer(rabbit.port)
    output = AmqpOutput(collector_config(tmp_path / "spool", "amqp", rabbit.port,
                                         events_snapshot_kb=4), ["cam0"])
    try:
        wait_until(lambda: output.connected, 15, "connected")  # its queue is declared
        feed_hostile_then_good(output)
        output.end_of_stream("cam0")
        want = expected_hostile_then_good()
        wait_until(lambda: len(consumer.events()) >= len(want), 30, "every event")
        events = consumer.events()
        assert [(e["type"], e["label"], e["seq"]) for e in events] == want
        assert {label for _t, label, _s in want} >= {"motion", "object", "label-00000000"}
        for e in events:  # every label of the rule, every id a valid message_id
            assert names.label(e["label"]) == e["label"] and len(e["id"].encode()) <= 255
        snaps = [key for key, _b, _p in consumer.read("test.tap")
                 if key.startswith("cam0.snapshot.")]
        assert len(snaps) >= 8 and all(names.label(k.split(".")[2]) == k.split(".")[2]
                                       for k in snaps)
        status = output.status()
        assert status["refused"] == 3 and status["broker"] == "connected"
        assert status["depth"] == 0 and not status.get("errors"), status
    finally:
        output.close()


def test_a_wrong_password_is_named_in_the_status(rabbit: Rabbit, tmp_path: Path) -> None:
    from vidpipe.outputs.amqp import AmqpOutput

    secret = tmp_path / "amqp.secret"
    secret.write_text("guest\nnot-the-password\n")
    secret.chmod(0o600)
    output = AmqpOutput(collector_config(tmp_path / "spool", "amqp", rabbit.port,
                                         amqp_credentials_file=str(secret)))
    try:
        wait_until(lambda: "refused" in output.status()["broker"], 15, "refused")
        feed(output, 60)
        time.sleep(3)
        status = output.status()
        assert status["broker"] == "refused: authentication failed (amqp.credentials_file)"
        assert status["depth"] > 0 and not status.get("published")
        assert "not-the-password" not in json.dumps(status)
        # corrected while the collector runs: the next connect reads it
        secret.write_text("guest\nguest\n")
        wait_until(lambda: output.status()["broker"] == "connected", 15, "connected")
        wait_until(lambda: output.status()["depth"] == 0, 15, "spool emptied")
    finally:
        output.close()


def test_events_arrive_over_tls_verified_against_the_ca(tmp_path: Path) -> None:
    """An AMQPS listener with a certificate of a test CA: amqp_tls with that
    CA's file connects and publishes; without it (the system's CAs) the
    certificate is refused and the events wait in the spool."""
    from vidpipe.outputs.amqp import AmqpOutput

    ca, cert, key = make_tls(tmp_path)
    rabbit = Rabbit(tmp_path / "rabbit", tls=(ca, cert, key))
    try:
        consumer = Consumer(rabbit.port)
        untrusted = AmqpOutput(collector_config(tmp_path / "spool-untrusted", "amqp",
                                                rabbit.tls_port, amqp_tls=True))
        try:
            feed(untrusted, 60)
            wait_until(lambda: untrusted.status()["broker"].startswith("refused"), 20,
                       "the unknown CA named")
            assert untrusted.status()["broker"] == "refused: TLS certificate not trusted (" \
                "self-signed certificate in certificate chain; amqp.ca_file)"
            assert untrusted.status()["depth"] > 0 and not untrusted.status().get("published")
        finally:
            untrusted.close()
        output = AmqpOutput(collector_config(tmp_path / "spool", "amqp", rabbit.tls_port,
                                             amqp_tls=True, amqp_ca_file=str(ca)))
        try:
            wait_until(lambda: output.status()["broker"] == "connected", 20, "TLS connection")
            feed(output, 120)
            output.end_of_stream("cam0")
            want = expected(120)
            wait_until(lambda: len(consumer.events()) >= len(want), 30, "events over TLS")
            assert [(e["type"], e["seq"]) for e in consumer.events()] == want
        finally:
            output.close()
    finally:
        rabbit.close()
