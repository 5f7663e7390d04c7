"""The ``mqtt`` output: events and per-camera state to an MQTT broker
(Home Assistant, Node-RED, anything that subscribes), losing nothing while
the broker is away.

Topics (``mqtt_topic`` is the prefix, ``vidpipe`` by default):

* ``PREFIX/CAMERA/events``: every event (:mod:`vidpipe.events`: start,
  update, end), QoS 1, not retained;
* ``PREFIX/CAMERA/state``: at most ``state_hz`` times a second, QoS 1,
  retained: fps, latency p50/p99, frames processed/dropped/missing, the
  labels active now;
* ``PREFIX/availability``: ``online`` / ``offline``, retained; the broker
  sends ``offline`` itself if the collector vanishes (the Last Will).

The collector's thread only hands messages to a bounded queue
(:meth:`emit` never waits for the network or the disk). A thread of this
output moves them into the disk spool (:mod:`.spool`) and publishes what the
spool holds, in order, while connected; a record leaves the spool when the
broker acknowledged it (PUBACK). So events survive a broker restart, a
network outage, a collector crash and a reboot; after a reconnect, a
message whose PUBACK was lost is sent again with the same event ``id``.
"""

import json
import logging
import os
import queue
import socket
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from vidpipe import safefile
from vidpipe.config import CollectorConfig
from vidpipe.events import Tracker
from vidpipe.ordering import DROPPED, MISSING, OK, Entry
from vidpipe.outputs import Output, hass
from vidpipe.outputs.spool import EVENT, STATE, Spool, SpoolError
from vidpipe.stats import LatencyWindow, RateMeter, Tally

log = logging.getLogger("vidpipe.mqtt")
QUEUE = 10000  # messages between the collector's thread and the publisher
MAX_INFLIGHT = 100  # published, not yet acknowledged
RECONNECT_MAX_S = 10.0  # the longest between attempts: a broker back is seen soon


def require_paho() -> Any:
    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise ImportError("output 'mqtt' needs the paho-mqtt module (Debian: apt install "
                          "python3-paho-mqtt)") from None
    return mqtt


def read_credentials(path: str) -> Tuple[str, str]:
    """(user, password) from a file: the user on its first line, the password
    on its second (root:vidpipe 0640: it is a secret)."""
    lines = safefile.read_plain(path, limit=4096).decode("utf-8").splitlines()
    if len(lines) < 2 or not lines[0].strip():
        raise ValueError("{}: expected the user name on the first line and the password on "
                         "the second".format(path))
    return lines[0].strip(), lines[1].rstrip("\r\n")


def _pack(topic: str, payload: bytes, retain: bool) -> bytes:
    return (b"R" if retain else b"-") + topic.encode("utf-8") + b"\0" + payload


def _unpack(record: bytes) -> Tuple[str, bytes, bool]:
    topic, _, payload = record[1:].partition(b"\0")
    return topic.decode("utf-8", "replace"), payload, record[:1] == b"R"


class _CameraState:
    def __init__(self) -> None:
        self.rate = RateMeter()
        self.latency = LatencyWindow()
        self.counts = Tally()
        self.last_sent = 0.0


class MqttOutput(Output):
    name = "mqtt"

    def __init__(self, cc: CollectorConfig, cameras: Optional[List[str]] = None) -> None:
        self.mqtt = require_paho()
        self.discovery = cc.mqtt_discovery_prefix if cc.mqtt_discovery else ""
        self.announced: set = set()  # cameras whose discovery config went out
        self.known = list(cameras or [])
        self.prefix = cc.mqtt_topic.rstrip("/")
        self.tracker = Tracker(cc.events_min_frames, cc.events_end_after_s, cc.events_update_s)
        self.state_period = 1.0 / cc.state_hz if cc.state_hz > 0 else 0.0
        self.cameras: Dict[str, _CameraState] = {}
        self.counts = Tally()  # queued, published, acked, dropped_queue, spool_full
        self.queue: "queue.Queue[Tuple[int, str, bytes, bool]]" = queue.Queue(QUEUE)
        self.spool = Spool(os.path.join(cc.spool_dir, "mqtt"), cc.spool_max_mb * 1024 * 1024)
        self.availability = self.prefix + "/availability"
        self.connected = False
        self.state = "connecting"
        self._inflight: Dict[int, int] = {}  # mid -> spool seq
        self._early: set = set()  # mids acked before we noted them
        self._ids = threading.Lock()
        self._sent_upto = 0  # highest spool seq handed to the client
        self._stop = threading.Event()
        self.client = self._client(cc)
        self.client.connect_async(cc.mqtt_host, cc.mqtt_port, keepalive=30)
        self.client.loop_start()
        self.thread = threading.Thread(target=self._run, name="mqtt", daemon=True)
        self.thread.start()

    # ------------------------------------------------------------------ the client

    def _client(self, cc: CollectorConfig) -> Any:
        client_id = cc.mqtt_client_id or "vidpipe-{}".format(socket.gethostname())
        client = self.mqtt.Client(client_id=client_id, clean_session=True)
        if cc.mqtt_credentials_file:
            client.username_pw_set(*read_credentials(cc.mqtt_credentials_file))
        if cc.mqtt_tls:
            client.tls_set(ca_certs=cc.mqtt_ca_file or None)
        client.will_set(self.availability, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=int(RECONNECT_MAX_S))
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, rc: int) -> None:
        if rc != 0:
            self.state = "refused: {}".format(self.mqtt.connack_string(rc))
            log.warning("mqtt: broker %s", self.state)
            return
        self.connected, self.state = True, "connected"
        client.publish(self.availability, b"online", qos=1, retain=True)
        self.announced.clear()  # a broker without a store has forgotten them
        for camera in self.known:
            self._announce(camera)
        log.info("mqtt: connected; %d message(s) spooled", self.spool.stats()["depth"])

    def _announce(self, camera: str) -> None:
        """Home Assistant discovery for ``camera`` (retained, on each connect)."""
        if not self.discovery or camera in self.announced or not self.connected:
            return
        self.announced.add(camera)
        for topic, payload in hass.discovery(self.discovery, self.prefix, camera,
                                             socket.gethostname()):
            self.client.publish(topic, payload, qos=1, retain=True)

    def _on_disconnect(self, _client: Any, _userdata: Any, rc: int) -> None:
        self.connected = False
        if not self._stop.is_set():
            self.state = "disconnected ({})".format(self.mqtt.error_string(rc))
            log.warning("mqtt: %s; spooling", self.state)

    def _on_publish(self, _client: Any, _userdata: Any, mid: int) -> None:
        with self._ids:
            seq = self._inflight.pop(mid, None)
            if seq is None:
                self._early.add(mid)
                return
        self._acked(seq)

    def _acked(self, seq: int) -> None:
        self.spool.ack(seq)
        self.counts["acked"] += 1

    # ------------------------------------------------------------------ the publisher

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = self.queue.get(timeout=0.05)
            except queue.Empty:
                item = None
            while item is not None:
                self._spool(*item)
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    item = None
            if self.connected:
                self._publish_spooled()
            self.spool.tick()

    def _spool(self, kind: int, topic: str, payload: bytes, retain: bool) -> None:
        try:
            self.spool.append(kind, _pack(topic, payload, retain))
        except SpoolError as exc:  # full of more precious records: counted by the spool
            self.counts["spool_full"] += 1
            log.debug("mqtt: %s", exc)

    def _publish_spooled(self) -> None:
        room = MAX_INFLIGHT - len(self._inflight)
        if room <= 0:
            return
        for record in self.spool.pending(after=self._sent_upto, limit=room):
            topic, payload, retain = _unpack(record.payload)
            info = self.client.publish(topic, payload, qos=1, retain=retain)
            if info.rc != self.mqtt.MQTT_ERR_SUCCESS:
                return  # not connected after all: paho keeps it and sends it on reconnect
            self._sent_upto = record.seq
            self.counts["published"] += 1
            with self._ids:
                early = info.mid in self._early
                if early:
                    self._early.discard(info.mid)
                else:
                    self._inflight[info.mid] = record.seq
            if early:
                self._acked(record.seq)

    # ------------------------------------------------------------------ the collector's side

    def _offer(self, kind: int, topic: str, doc: Dict[str, Any], retain: bool = False) -> None:
        try:
            self.queue.put_nowait((kind, topic, json.dumps(doc, separators=(",", ":"))
                                   .encode(), retain))
            self.counts["queued"] += 1
        except queue.Full:  # the disk is stuck: counted, the pipeline goes on
            self.counts["dropped_queue"] += 1

    def emit(self, camera: str, entry: Entry, latency_ms: Optional[float]) -> None:
        cam = self.cameras.get(camera)
        if cam is None:
            cam = self.cameras[camera] = _CameraState()
            if camera not in self.known:  # a camera udev named that the config does not
                self.known.append(camera)
            self._announce(camera)
        if entry.late:  # already counted missing: events follow the in-order stream
            return
        cam.counts[entry.status] += 1
        if entry.status == OK and entry.message is not None:
            cam.rate.tick()
            if latency_ms is not None:
                cam.latency.add(latency_ms)
            head = entry.message.header
            for event in self.tracker.feed(camera, head.seq, head.capture_ns,
                                           entry.message.meta):
                self._offer(EVENT, "{}/{}/events".format(self.prefix, camera), event)
        now = time.monotonic()
        if self.state_period and now - cam.last_sent >= self.state_period:
            cam.last_sent = now
            self._offer(STATE, "{}/{}/state".format(self.prefix, camera),
                        self._state(camera, cam), retain=True)

    def _state(self, camera: str, cam: _CameraState) -> Dict[str, Any]:
        active = sorted(label for label, st in self.tracker.cameras.get(camera, {}).items()
                        if st.active is not None)
        return {"v": 1, "camera": camera, "time": round(time.time(), 3),
                "fps": round(cam.rate.rate(), 2),
                "latency_p50_ms": cam.latency.percentile(50),
                "latency_p99_ms": cam.latency.percentile(99),
                "processed": cam.counts[OK], "dropped": cam.counts[DROPPED],
                "missing": cam.counts[MISSING], "active": active}

    def end_of_stream(self, camera: str) -> None:
        for event in self.tracker.end_all(camera):
            self._offer(EVENT, "{}/{}/events".format(self.prefix, camera), event)

    def status(self) -> Dict[str, Any]:
        """For the status board, STATUS and /metrics."""
        return dict(self.spool.stats(), broker=self.state, **self.counts.as_dict())

    def close(self, drain_s: float = 2.0) -> None:
        """Spool what is queued; give the broker ``drain_s`` to take what is
        spooled; say offline; stop. What is left stays spooled for next time."""
        deadline = time.monotonic() + drain_s
        while (not self.queue.empty() or (self.connected and self.spool.stats()["depth"])) \
                and time.monotonic() < deadline:
            time.sleep(0.02)
        self._stop.set()
        self.thread.join(2.0)
        while True:  # what the thread did not get to
            try:
                self._spool(*self.queue.get_nowait())
            except queue.Empty:
                break
        if self.connected:
            self.client.publish(self.availability, b"offline", qos=1, retain=True)
        self.client.disconnect()
        self.client.loop_stop()
        self.spool.close()
