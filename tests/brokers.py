"""Real brokers for the broker-output tests, started and stopped by the tests
from Debian's packages (``./dev test`` installs them): mosquitto and
rabbitmq-server, each on ports of its own and with its store in the test's
directory; and the motion pattern the tests feed, with the events a tracker
makes of it."""

import json
import os
import pwd
import signal
import socket
import threading
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pytest

from conftest import free_port, wait_until
from vidpipe.link import wire
from vidpipe.config import config_from_dict
from vidpipe.outputs.events import Tracker
from vidpipe.link.ordering import OK, Entry

MOSQUITTO = "/usr/sbin/mosquitto"
RABBITMQ = "/usr/lib/rabbitmq/bin/rabbitmq-server"
EPMD = "/usr/bin/epmd"


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


class Mosquitto:
    """mosquitto on a port of its own, with a persistent store (so a
    subscriber's session survives a restart, as on a real installation)."""

    def __init__(self, root: Path, secure: str = "") -> None:
        """``secure``: lines for the listener instead of anonymous access
        (certificates, a password file)."""
        if not os.path.exists(MOSQUITTO):
            pytest.fail("mosquitto is not installed (./dev test installs it)")
        self.port = free_port()
        self.root = root
        conf = root / "mosquitto.conf"
        # as root, mosquitto would switch to its own user, which cannot write
        # its store into the test's directory: stay who we are
        user = "user {}\n".format(pwd.getpwuid(os.geteuid()).pw_name)
        conf.write_text("listener {} 127.0.0.1\n{}persistence true\n"
                        "persistence_location {}/\nautosave_interval 1\n"
                        "log_dest stderr\n{}".format(self.port, secure or
                                                      "allow_anonymous true\n", root, user))
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.root / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: listening(self.port), 10, "mosquitto listening")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # saves its store
            self.proc.wait(10)
            self.proc = None


class Rabbit:
    """rabbitmq-server as a node of its own (name, AMQP port, distribution
    port, its own epmd), its database in ``root`` so durable queues and
    persistent messages survive a restart."""

    def __init__(self, root: Path, tls: Optional[Tuple[Path, Path, Path]] = None) -> None:
        """``tls``: (ca, certificate, key) for an AMQPS listener on ``tls_port``
        beside the plain one."""
        if not os.path.exists(RABBITMQ):
            pytest.fail("rabbitmq-server is not installed (./dev test installs it)")
        self.root = root
        self.port = free_port()
        self.epmd_port = free_port()
        self.tls_port = free_port() if tls else 0
        root.mkdir(parents=True, exist_ok=True)
        (root / "enabled_plugins").write_text("[].\n")
        conf = "loopback_users = none\n"
        if tls:
            conf += ("listeners.ssl.default = 127.0.0.1:{}\nssl_options.cacertfile = {}\n"
                     "ssl_options.certfile = {}\nssl_options.keyfile = {}\n"
                     "ssl_options.verify = verify_none\n"
                     "ssl_options.fail_if_no_peer_cert = false\n").format(self.tls_port, *tls)
        (root / "rabbitmq.conf").write_text(conf)
        self.env = dict(
            os.environ, HOME=str(root), ERL_EPMD_PORT=str(self.epmd_port),
            RABBITMQ_NODENAME="vidpipe-test-{}@localhost".format(self.port),
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1", RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(free_port()), RABBITMQ_MNESIA_BASE=str(root / "mnesia"),
            RABBITMQ_LOG_BASE=str(root / "log"), RABBITMQ_CONFIG_FILE=str(root / "rabbitmq.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(root / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(root / "pid"))
        # an epmd of its own, ended with the test (rabbitmq would leave a daemon behind)
        self.epmd = subprocess.Popen([EPMD, "-port", str(self.epmd_port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen([RABBITMQ], env=self.env, stdout=log, stderr=log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        began = time.monotonic()
        wait_until(lambda: listening(self.port) or self.proc.poll() is not None, 60,
                   "rabbitmq-server listening")
        if self.proc.poll() is not None:
            raise AssertionError("rabbitmq-server exited: {}".format(
                (self.root / "server.log").read_text()[-2000:]))
        self.started_s = time.monotonic() - began

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # a clean stop, as systemd does
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            self.proc = None

    def close(self) -> None:
        self.stop()
        self.epmd.terminate()
        self.epmd.wait(10)


def make_tls(root: Path) -> Tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl"] + list(args), cwd=str(root), check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "2", "-subj", "/CN=vidpipe test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=127.0.0.1")
    (root / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.ext")
    return root / "ca.crt", root / "server.crt", root / "server.key"


def collector_config(spool: Path, output: str, port: int, **extra: Any) -> Any:
    cc = dict({"outputs": [output], output + "_port": port, "spool_dir": str(spool),
               "events_min_frames": 2, "events_end_after_s": 0.3, "state_hz": 2.0}, **extra)
    return config_from_dict({"collector": cc}).collector


def motion_entry(seq: int, on: bool, capture_ns: int, image: bool = False) -> Entry:
    """A result as the collector releases it: motion boxes while ``on``; with
    ``image``, a 160x120 gray frame whose brightness is its seq."""
    payload = None
    size = {}
    if image:
        payload = memoryview(np.full((120, 160), seq % 256, np.uint8).tobytes())
        size = dict(width=160, height=120, channels=1, dtype=1, payload_len=len(payload))
    head = wire.Header(wire.RESULT, "cam0", 1, seq, capture_ns, **size)
    meta = {"motion": {"boxes": [[seq % 50, 1, 8, 8]] if on else [], "fraction": 0.02}}
    return Entry(seq=seq, status=OK, arrived=0.0, message=wire.Message(head, meta, payload))


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


class Processed:
    """The collector's figures for the camera as :func:`feed` goes: what its
    status board would say (outputs show the collector's figures)."""

    def __init__(self) -> None:
        self.frames = 0

    def __call__(self, camera: str) -> Dict[str, Any]:
        return {"frames": self.frames, "dropped": {}, "missing": 0, "fps": 30.0,
                "latency_p50_ms": 1.0, "latency_p99_ms": 1.0}


def feed(output: Any, frames: int, start: int = 0, fps: float = 0.0,
         image: bool = False) -> List[float]:
    """Emit frames ``start``.. as the collector would (counting them first);
    the time each emit took."""
    took = []
    on = pattern(start + frames)
    if not isinstance(output.figures, Processed):
        output.figures = Processed()
    for seq in range(start, start + frames):
        entry = motion_entry(seq, on[seq], seq * 33_333_333, image)
        output.figures.frames += 1
        began = time.perf_counter()
        output.emit("cam0", entry, 1.0)
        took.append(time.perf_counter() - began)
        if fps:
            time.sleep(1.0 / fps)
    return took


def unique_in_order(events: List[Any]) -> List[Tuple[str, int]]:
    """(type, seq) of ``events`` with at-least-once repeats folded: a repeat
    carries the same id, type and seq as the first delivery."""
    unique: List[Tuple[str, int]] = []
    for e in events:
        key = (e["type"], e["seq"])
        if key not in unique:
            unique.append(key)
    return unique


KILLED = """
import importlib, sys, time
sys.path.insert(0, sys.argv[4])
from brokers import collector_config, feed
OUTPUT = importlib.import_module("vidpipe.outputs." + sys.argv[1]).OUTPUT
output = OUTPUT(collector_config(sys.argv[2], sys.argv[1], int(sys.argv[3])))
feed(output, 300)
while output.status()["queued"] > output.status()["depth"] + 10 or \\
        output.status()["depth"] < 20:  # in the spool: every event fsynced
    time.sleep(0.05)
print(output.status()["depth"], flush=True)
time.sleep(60)
"""


def killed_collector(output: str, spool: Path, port: int) -> int:
    """A collector's broker output fed 300 frames of :func:`pattern` while
    its broker is away, SIGKILLed once its events are in the spool; how
    many messages it had spooled."""
    from conftest import SRC

    proc = subprocess.Popen([sys.executable, "-c", KILLED, output, str(spool), str(port),
                             str(Path(__file__).resolve().parent)],
                            stdout=subprocess.PIPE, universal_newlines=True,
                            env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert proc.stdout is not None
    spooled = int(proc.stdout.readline())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return spooled


#: labels a model (or a hostile handler) may put in a RESULT: each once broke
#: a broker output for good (issue 24): an event id over AMQP's 255-byte
#: message_id, a lone surrogate pika/paho cannot encode, MQTT wildcards
HOSTILE_LABELS = ["\U0001F600" * 64, "bad\ud800label", "#", "a/+/b", "x" * 300,
                  "line\nbreak", "", None, {"nested": 1}]


def hostile_entry(seq: int, capture_ns: int) -> Entry:
    """A processed result, with an image, whose detections carry every hostile label."""
    entry = motion_entry(seq, False, capture_ns, image=True)
    entry.message.meta["detections"] = [
        {"label": label, "box": [1, 1, 4, 4], "confidence": 0.9} for label in HOSTILE_LABELS]
    return entry


def spool_hostile_records(spool_dir: Path, output: str) -> None:
    """Leave :func:`hostile_records` in ``output``'s spool, as an older
    version would have, before the output starts."""
    from vidpipe.outputs.spool import EVENT, Spool

    old = Spool(str(spool_dir / output), 1 << 20)
    for message in hostile_records("." if output == "amqp" else "/"):
        old.append(EVENT, message.pack())
    old.close()


def hostile_records(address_sep: str) -> List[Any]:
    """Messages an older version spooled from hostile labels, as they sit in
    the spool after an upgrade. AMQP's pika refuses three (an event id over
    255 bytes, a lone surrogate, a routing key over 255 bytes) and takes the
    wildcard; MQTT's paho refuses three (the surrogate, the wildcard, a topic
    over 65535 bytes) and takes the long id (outside the test's topics)."""
    from vidpipe.outputs.broker import Message

    long_id = json.dumps({"id": "cam0-" + "\U0001F600" * 64 + "-1", "type": "start"}).encode()
    return [Message("events", address_sep.join(["cam0", "events"]), long_id),
            Message("snapshot", address_sep.join(["cam0", "bad\ud800", "snapshot"]), b"\xff\xd8"),
            Message("snapshot", address_sep.join(["old", "cam0", "#", "snapshot"]), b"\xff\xd8"),
            Message("snapshot", address_sep.join(["old", "x" * 70000]), b"\xff\xd8")]


def feed_hostile_then_good(output: Any, frames: int = 120) -> None:
    """Hostile results for a while, then the usual motion pattern, as
    :func:`feed` would (the good events are :func:`expected` shifted by 60)."""
    for seq in range(60):
        output.emit("cam0", hostile_entry(seq, seq * 33_333_333), 1.0)
    feed(output, frames, start=60)


def expected_hostile_then_good(frames: int = 120) -> List[Tuple[str, str, int]]:
    """(type, label, seq) of every event :func:`feed_hostile_then_good` and an
    end of stream make, as the tracker makes them."""
    tracker = Tracker(2, 0.3, 5.0)
    on = pattern(60 + frames)
    out = []
    for seq in range(60 + frames):
        entry = hostile_entry(seq, seq * 33_333_333) if seq < 60 else \
            motion_entry(seq, on[seq], seq * 33_333_333)
        out.extend(tracker.feed("cam0", seq, seq * 33_333_333, entry.message.meta))
    out.extend(tracker.end_all("cam0"))
    return [(e["type"], e["label"], e["seq"]) for e in out]


class Subscriber:
    """A real client on PREFIX/#, QoS 1, with a session that outlives its
    connection (what Home Assistant does)."""

    def __init__(self, port: int, prefix: str = "vidpipe",
                 client_id: str = "test-subscriber") -> None:
        self.got: List[Tuple[str, Any, bool]] = []
        self.lock = threading.Lock()
        from paho.mqtt import client as mqtt  # only where a test needs it (need_module)

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
        try:
            payload = msg.payload.decode()
        except UnicodeDecodeError:  # a snapshot's JPEG
            payload = msg.payload
        with self.lock:
            self.got.append((msg.topic, json.loads(payload) if isinstance(payload, str) and
                             payload.startswith("{") else payload, bool(msg.retain)))

    def events(self) -> List[Dict[str, Any]]:
        with self.lock:
            return [p for t, p, _r in self.got if t.endswith("/events")]

    def on(self, topic: str) -> List[Any]:
        with self.lock:
            return [p for t, p, _r in self.got if t == topic]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()
