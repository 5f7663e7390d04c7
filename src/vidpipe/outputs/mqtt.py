"""The ``mqtt`` output: events, snapshots and per-camera state to an MQTT
broker (Home Assistant, Node-RED, anything that subscribes), losing nothing
while the broker is away (:mod:`.broker` has what it shares with ``amqp``:
the queue, the spool, what is published).

Topics under ``mqtt_topic`` (``vidpipe``): ``CAMERA/events``,
``CAMERA/state`` (retained), ``CAMERA/LABEL/snapshot`` (retained) and
``availability`` (with the Last Will). The contract -- topics, QoS, payloads,
the camera-name and label rules -- is written once, in docs/outputs.md.

A spooled message leaves the spool when the broker acknowledged it (PUBACK);
after a reconnect, a message whose PUBACK was lost is sent again with the
same event ``id``.
"""

import logging
import socket
import threading
from typing import Any, Dict, List, Optional

from vidpipe.config import CollectorConfig
from vidpipe.outputs import hass
from vidpipe.config.credentials import read_credentials
from vidpipe.names import one_line
from vidpipe.outputs.broker import Areas, BrokerOutput, require, tls_problem

log = logging.getLogger("vidpipe.mqtt")
MAX_INFLIGHT = 100  # published, not yet acknowledged
RECONNECT_MAX_S = 10.0  # the longest between attempts: a broker back is seen soon


class MqttOutput(BrokerOutput):
    name = "mqtt"
    TABLE = "mqtt"
    REQUIRES = (("paho.mqtt.client", "python3-paho-mqtt"),)

    def __init__(self, cc: CollectorConfig, cameras: Optional[List[str]] = None,
                 areas: Optional[Areas] = None) -> None:
        self.mqtt = require(self)
        self.cc = cc
        super().__init__(cc, cameras, areas=areas)
        self.discovery = cc.mqtt_discovery_prefix if cc.mqtt_discovery else ""
        self.announced: set = set()  # cameras whose discovery config went out
        self.prefix = cc.mqtt_topic.rstrip("/")
        self.availability = self.prefix + "/availability"
        self._inflight: Dict[int, int] = {}  # mid -> spool seq
        self._early: set = set()  # mids acked before we noted them
        self._ids = threading.Lock()
        self._sent_upto = 0  # highest spool seq handed to the client
        self.client = self._client(cc)
        self.client.connect_async(cc.mqtt_host, cc.mqtt_port, keepalive=30)
        self.client.loop_start()
        self.start()

    def address(self, camera: str, stream: str, label: str = "") -> str:
        return "/".join([self.prefix, camera] + ([label] if label else []) + [stream])

    # ------------------------------------------------------------------ the client

    def _client(self, cc: CollectorConfig) -> Any:
        client_id = cc.mqtt_client_id or "vidpipe-{}".format(socket.gethostname())
        client = self.mqtt.Client(client_id=client_id, clean_session=True)
        if cc.mqtt_credentials_file:  # unreadable at start: the output is not made
            client.username_pw_set(*read_credentials(cc.mqtt_credentials_file))
        if cc.mqtt_tls:
            client.tls_set(ca_certs=cc.mqtt_ca_file or None)
        client.will_set(self.availability, b"offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=int(RECONNECT_MAX_S))
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail  # paho >= 1.6; older ones stay silent
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _reread_credentials(self) -> None:
        """Before paho's next attempt: the credentials file as it is now (a
        corrected password needs no restart; a broken file keeps the last)."""
        path = self.cc.mqtt_credentials_file
        if not path:
            return
        try:
            self.client.username_pw_set(*read_credentials(path))
        except (OSError, ValueError) as exc:
            self.warn("credentials", "mqtt: %s (mqtt.credentials_file); trying with the "
                      "credentials read before", one_line(exc, 200))

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, rc: int) -> None:
        if rc != 0:
            state = "refused: {}".format(self.mqtt.connack_string(rc))
            if state != self.state:  # logged once, not at every retry
                log.warning("mqtt: broker %s", state)
            self.state = state
            self._reread_credentials()
            return
        self.connected, self.state = True, "connected"
        client.publish(self.availability, b"online", qos=1, retain=True)
        self.announced.clear()  # a broker without a store has forgotten them
        for camera in self.known:
            self._announce(camera)
        log.info("mqtt: connected; %d message(s) spooled", self.spool.stats()["depth"])

    def _on_connect_fail(self, _client: Any, _userdata: Any) -> None:
        """The connection (TCP or TLS) failed: paho retries without saying
        why, so a TLS broker gets one handshake of ours to find out."""
        cc = self.cc
        self._reread_credentials()
        state = tls_problem(cc.mqtt_host, cc.mqtt_port, cc.mqtt_ca_file, "mqtt.ca_file") \
            if cc.mqtt_tls else "unreachable"
        if state != self.state:
            log.warning("mqtt: broker %s; spooling", state)
        self.state = state

    def new_camera(self, camera: str) -> None:
        self._announce(camera)

    def _announce(self, camera: str) -> None:
        """Home Assistant discovery for ``camera`` (retained, on each connect)."""
        if not self.discovery or camera in self.announced or not self.connected:
            return
        self.announced.add(camera)
        zones, lines = self.areas.get(camera, ((), ()))
        for topic, payload in hass.discovery(self.discovery, self.prefix, camera,
                                             socket.gethostname(), zones, lines):
            self.client.publish(topic, payload, qos=1, retain=True)

    def _on_disconnect(self, _client: Any, _userdata: Any, rc: int) -> None:
        self.connected = False
        self._reread_credentials()
        if self._stop.is_set() or self.state.startswith("refused"):
            return  # a refusal is the reason to show, not the disconnect it causes
        state = "disconnected ({})".format(self.mqtt.error_string(rc))
        if state != self.state:
            log.warning("mqtt: %s; spooling", state)
        self.state = state

    def _on_publish(self, _client: Any, _userdata: Any, mid: int) -> None:
        with self._ids:
            seq = self._inflight.pop(mid, None)
            if seq is None:
                self._early.add(mid)
                return
        self.acked(seq)

    # ------------------------------------------------------------------ the publisher

    def service(self) -> None:
        if self.connected:
            self._publish_spooled()

    def _publish_spooled(self) -> None:
        room = MAX_INFLIGHT - len(self._inflight)
        if room <= 0:
            return
        for seq, message in self.spooled(self._sent_upto, room):
            try:
                info = self.client.publish(message.address, message.payload, qos=1,
                                           retain=message.retain)
            except (ValueError, TypeError) as exc:  # a topic paho refuses: '#', '+', too long
                self._sent_upto = seq
                self.refused(seq, message, exc)
                continue
            if info.rc != self.mqtt.MQTT_ERR_SUCCESS:
                return  # not connected after all: paho keeps it and sends it on reconnect
            self._sent_upto = seq
            self.counts["published"] += 1
            with self._ids:
                early = info.mid in self._early
                if early:
                    self._early.discard(info.mid)
                else:
                    self._inflight[info.mid] = seq
            if early:
                self.acked(seq)

    def shutdown(self) -> None:
        if self.connected:
            self.client.publish(self.availability, b"offline", qos=1, retain=True)
        self.client.disconnect()
        self.client.loop_stop()


OUTPUT = MqttOutput
