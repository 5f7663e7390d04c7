"""The ``amqp`` output: events, snapshots, per-camera state and (opt-in) every
frame's result to an AMQP 0-9-1 broker (RabbitMQ), with publisher confirms,
losing nothing while the broker is away (:mod:`.broker` has what it shares
with ``mqtt``: the queue, the spool, what is published).

Routing: one durable topic exchange, ``amqp_exchange`` (``vidpipe``), with
routing keys ``CAMERA.events``, ``CAMERA.state``, ``CAMERA.snapshot.LABEL``
and (``amqp_results = true``) ``CAMERA.results``; the contract -- keys,
bodies, headers, the name and label rules -- is written once, in
docs/outputs.md.

Every message is persistent (delivery mode 2) and carries its content type
and, for events, the event id as ``message_id``. So that events wait for a
consumer that is not there yet, the output declares a durable queue,
``amqp_queue`` (``vidpipe.events``), bound to ``*.events`` (``""``: none;
then messages nobody bound a queue for are dropped by the broker, as AMQP
does). Consumers bind their own queues for the other streams.

A spooled message leaves the spool when the broker confirmed it (publisher
confirms: for a persistent message to a durable queue, once it is on the
broker's disk); a nack leaves it spooled, to be sent again. The connection
lives in the output's publisher thread (pika's connections are not
thread-safe); a broker that is away is tried again after 1 s, doubling up
to 5 s: a connect attempt to a host that answers costs next to nothing.
"""

import json
import logging
import ssl
import time
from typing import Any, List, Optional

from vidpipe.config import CollectorConfig
from vidpipe.config.credentials import read_credentials
from vidpipe.names import one_line
from vidpipe.outputs.broker import Areas, BrokerOutput, require, untrusted_certificate

log = logging.getLogger("vidpipe.amqp")
BATCH = 200  # spooled messages published per service() call
RECONNECT_MAX_S = 5.0


class AmqpOutput(BrokerOutput):
    name = "amqp"
    TABLE = "amqp"
    REQUIRES = (("pika", "python3-pika"),)

    def __init__(self, cc: CollectorConfig, cameras: Optional[List[str]] = None,
                 areas: Optional[Areas] = None) -> None:
        self.pika = require(self)
        super().__init__(cc, cameras, results=cc.amqp_results, areas=areas)
        self.cc = cc
        self.exchange = cc.amqp_exchange
        self.events_queue = cc.amqp_queue
        #: what pika raises for a message it cannot encode (a routing key,
        #: message id or header over 255 bytes, a lone surrogate, a value of
        #: no AMQP type): that message's own fault, not the connection's
        #: (pika marshals every frame before it writes one)
        self.unencodable = (self.pika.exceptions.ShortStringTooLong, ValueError, TypeError,
                            OverflowError)
        self.params = self._parameters(cc)
        self.connection: Any = None
        self.channel: Any = None
        self.next_attempt = 0.0
        self.backoff = 1.0
        self.start()

    def address(self, camera: str, stream: str, label: str = "") -> str:
        return ".".join([camera, stream] + ([label] if label else []))

    def _parameters(self, cc: CollectorConfig) -> Any:
        pika = self.pika
        kwargs = {}
        if cc.amqp_credentials_file:
            user, password = read_credentials(cc.amqp_credentials_file)
            kwargs["credentials"] = pika.PlainCredentials(user, password)
        if cc.amqp_tls:
            context = ssl.create_default_context(cafile=cc.amqp_ca_file or None)
            kwargs["ssl_options"] = pika.SSLOptions(context, cc.amqp_host)
        return pika.ConnectionParameters(
            host=cc.amqp_host, port=cc.amqp_port, virtual_host=cc.amqp_vhost,
            heartbeat=30, blocked_connection_timeout=10, connection_attempts=1,
            socket_timeout=2, stack_timeout=3, client_properties={
                "connection_name": "vidpipe collector"}, **kwargs)

    # ------------------------------------------------------------------ the connection

    def _connect(self) -> None:
        pika = self.pika
        try:  # the credentials file as it is now: a corrected password needs no restart
            self.params = self._parameters(self.cc)
        except (OSError, ValueError) as exc:
            self._failed("refused: {} (amqp.credentials_file)".format(one_line(exc, 160)))
            return
        try:
            connection = pika.BlockingConnection(self.params)
            channel = connection.channel()
            channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
            if self.events_queue:
                channel.queue_declare(self.events_queue, durable=True)
                channel.queue_bind(self.events_queue, self.exchange, routing_key="*.events")
            channel.confirm_delivery()
        except pika.exceptions.ProbableAuthenticationError:
            self._failed("refused: authentication failed (amqp.credentials_file)")
        except pika.exceptions.ProbableAccessDeniedError:
            self._failed("refused: access to virtual host denied (amqp.vhost)")
        except pika.exceptions.ChannelClosedByBroker as exc:
            self._failed("refused: {} (amqp.exchange {!r}, amqp.queue {!r})".format(
                one_line(exc.reply_text, 160), self.exchange, self.events_queue))
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._failed(untrusted_certificate(str(exc), "amqp.ca_file") or
                         "unreachable ({})".format(_reason(exc)))
        else:
            self.connection, self.channel = connection, channel
            self.connected, self.state, self.backoff = True, "connected", 1.0
            log.info("amqp: connected; %d message(s) spooled", self.spool.stats()["depth"])

    def _failed(self, state: str) -> None:
        if state != self.state:
            log.warning("amqp: broker %s; spooling", state)
        self.state = state
        self.next_attempt = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, RECONNECT_MAX_S)

    def _lost(self, exc: BaseException) -> None:
        self.connected = False
        connection, self.connection, self.channel = self.connection, None, None
        self._failed("disconnected ({})".format(_reason(exc)))
        try:
            connection.close()
        except Exception:  # already gone: nothing to tidy
            pass

    # ------------------------------------------------------------------ the publisher

    def service(self) -> None:
        if self.channel is None:
            if time.monotonic() < self.next_attempt:
                return
            self._connect()
            if self.channel is None:
                return
        pika = self.pika
        try:
            for seq, message in self.spooled(0, BATCH):
                headers = message.headers or None
                props = pika.BasicProperties(
                    content_type=message.content_type, delivery_mode=2, headers=headers,
                    message_id=_event_id(message), timestamp=int(time.time()))
                try:
                    self.channel.basic_publish(self.exchange, message.address,
                                               message.payload, props)
                except pika.exceptions.NackError:
                    self.counts["nacked"] += 1  # the broker would not take it: again later
                    return
                except self.unencodable as exc:  # pika will not encode it, now or ever
                    self.refused(seq, message, exc)
                    continue
                self.counts["published"] += 1
                self.acked(seq)
            self.connection.process_data_events(0)  # heartbeats, a broker's close
        except (pika.exceptions.AMQPError, OSError) as exc:
            self._lost(exc)

    def shutdown(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except Exception:  # the broker went first
                pass
        self.connected = False


def _event_id(message: Any) -> Optional[str]:
    if message.stream != "events":
        return None
    try:
        return str(json.loads(message.payload.decode("utf-8")).get("id"))
    except (ValueError, AttributeError):
        return None


def _reason(exc: BaseException) -> str:
    """Why, in one line: pika's ``AMQPConnectionError`` says nothing itself;
    its cause is in its arguments (``ConnectionRefusedError(111, ...)``); a
    broker's close reason is the broker's text (line breaks and all)."""
    text = str(exc)
    if not text and exc.args:
        text = "; ".join(str(arg) for arg in exc.args)
    return one_line(text or type(exc).__name__, 160)


OUTPUT = AmqpOutput
