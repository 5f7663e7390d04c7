"""Glass-to-broker latency: a frame's capture -> the event it caused, received
by a subscriber of a local broker (Debian's mosquitto and rabbitmq-server,
started here), with the motion stage at 640x480@30 through 2 handlers.

    python3 -m tests.bench.events               # 900 frames (30 s)
    python3 -m tests.bench.events --frames 300

For start and update events (an end is, by design, ``events_end_after_s``
after the last frame that saw the label) it measures ``capture_ns`` of the
frame the event was made from -> the subscriber's clock when it arrived,
and, for starts, the first frame of the streak -> arrival (which adds the
debounce ``events_min_frames`` asks for). The baseline, from the same run,
is the pipeline's own capture -> in-order release at the collector (the
``jsonl`` record's ``latency_ms``): the difference is what the event path
and the broker add. A benchmark, not a test: it prints a markdown table
(docs/performance.md quotes it)."""

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from brokers import Mosquitto, Rabbit  # noqa: E402
from vidpipe.tools.bench import percentile, run_vidpipe  # noqa: E402

Arrival = Tuple[int, Dict[str, Any]]  # (receive time ns, event)
MIN_FRAMES = 2
FPS = 30.0


class MqttListener:
    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt

        self.got: List[Arrival] = []
        self.client = mqtt.Client(client_id="bench-events", clean_session=True)
        ready = threading.Event()
        self.client.on_connect = lambda c, *_: c.subscribe("vidpipe/+/events", qos=1)
        self.client.on_subscribe = lambda *_: ready.set()
        self.client.on_message = lambda _c, _u, msg: self.got.append(
            (time.time_ns(), json.loads(msg.payload.decode())))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not ready.wait(10):
            raise RuntimeError("could not subscribe to mosquitto")

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class AmqpListener:
    """Consumes the output's events queue in a thread of its own."""

    def __init__(self, port: int) -> None:
        import pika

        self.got: List[Arrival] = []
        self.stop = threading.Event()
        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        channel = conn.channel()
        channel.queue_declare("vidpipe.events", durable=True)
        conn.close()
        self.thread = threading.Thread(target=self._run, args=(port,), daemon=True)
        self.thread.start()

    def _run(self, port: int) -> None:
        import pika

        conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", port))
        channel = conn.channel()
        for method, _props, body in channel.consume("vidpipe.events", auto_ack=True,
                                                    inactivity_timeout=0.1):
            if method is not None:
                self.got.append((time.time_ns(), json.loads(body.decode())))
            if self.stop.is_set():
                break
        channel.cancel()
        conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def latencies(got: List[Arrival]) -> Dict[str, Optional[float]]:
    made = [(t - e["capture_ns"]) / 1e6 for t, e in got if e["type"] in ("start", "update")]
    glass = [(t - e["start_ns"]) / 1e6 for t, e in got if e["type"] == "start"]
    return {"events": float(len(got)), "p50": percentile(made, 50), "p99": percentile(made, 99),
            "glass_p50": percentile(glass, 50), "glass_p99": percentile(glass, 99)}


def measure(frames: int) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vp-events-", dir="/tmp") as tmp:
        root = Path(tmp)
        mosquitto, rabbit = Mosquitto(root), Rabbit(root / "rabbit")
        mqtt, amqp = MqttListener(mosquitto.port), AmqpListener(rabbit.port)
        try:
            result = run_vidpipe(
                "640x480", 2, FPS, frames, "shm", stages={"motion": {"min_area": 20}},
                collector={"outputs": ["jsonl", "mqtt", "amqp"], "mqtt_port": mosquitto.port,
                           "amqp_port": rabbit.port, "spool_dir": str(root / "spool"),
                           "events_min_frames": MIN_FRAMES, "events_end_after_s": 0.3,
                           "events_update_s": 0.1,  # an update every 3rd frame: samples
                           "state_hz": 1.0}, timeout=frames / FPS + 60, prerender=0)
            time.sleep(1.0)  # the last events on their way
        finally:
            mqtt.close()
            amqp.close()
            mosquitto.stop()
            rabbit.close()
        return {"frames": frames, "received": result.received, "dropped": result.dropped,
                "e2e_p50": result.e2e_p50, "e2e_p99": result.e2e_p99,
                "mqtt": latencies(mqtt.got), "amqp": latencies(amqp.got)}


def table(run: Dict[str, Any]) -> str:
    period = 1000.0 / FPS
    lines = ["| broker | events | frame -> event received p50 ms | p99 | - pipeline p50 "
             "(capture -> collector) | first sighting -> start received p50 ms | target p50 "
             "(1 frame + debounce) |", "|---|---|---|---|---|---|---|"]
    for name in ("mqtt", "amqp"):
        lat = run[name]
        lines.append("| {} | {:.0f} | {} | {} | {} | {} | {:.1f} |".format(
            name, lat["events"], _f(lat["p50"]), _f(lat["p99"]),
            _f(lat["p50"] - run["e2e_p50"] if lat["p50"] is not None else None),
            _f(lat["glass_p50"]), period + (MIN_FRAMES - 1) * period))
    lines.append("")
    lines.append("Pipeline (same run): {} of {} frames processed, capture -> collector p50 "
                 "{} ms, p99 {} ms.".format(run["received"], run["frames"],
                                            _f(run["e2e_p50"]), _f(run["e2e_p99"])))
    return "\n".join(lines)


def _f(value: Optional[float]) -> str:
    return "-" if value is None else "{:.1f}".format(value)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=900)
    args = parser.parse_args(argv)
    run = measure(args.frames)
    print(table(run))
    print(json.dumps(run, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
