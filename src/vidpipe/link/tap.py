"""Taps (seed 2): decoders and the collector publish what they see on a PUB
socket, the camera name as topic, for any number of subscribers
(``vidpipe tap``: stats, a summary, an HDF5 copy).

An XPUB socket tells us whether anybody subscribed to a camera, so a stream
nobody taps costs nothing; when somebody does, each frame is copied into the
message (the pipeline reuses its buffers). A slow subscriber's queue is
bounded by ``pipeline.tap_hwm``: past it libzmq drops that subscriber's
frames, and only that subscriber's, and it sees the gap in the sequence
numbers. The publisher never waits.
"""

import logging
import time
from typing import Any, Dict, List

import zmq

from vidpipe.link.sockets import SUBSCRIPTION_PART, Sockets

log = logging.getLogger("vidpipe.tap")
#: libzmq before 4.3.4 (4.3.2 on Ubuntu 20.04 / JetPack 5) crashes an XPUB
#: socket that receives an upstream message that is not a subscription: any
#: subscriber could kill the decoder. There, taps use a plain PUB socket and
#: publish every frame (nobody is asked first; libzmq drops what nobody wants).
XPUB_SAFE = (4, 3, 4)
EOS_REPEATS = 5  # the end-of-stream notice is repeated: a full queue may drop one
MAX_TOPICS = 1024
CHECK_S = 0.05


class TapPublisher:
    def __init__(self, sockets: Sockets, endpoint: str, hwm: int) -> None:
        self.endpoint = endpoint
        self.knows_subscribers = zmq.zmq_version_info() >= XPUB_SAFE
        if self.knows_subscribers:
            self.sock = sockets.make(zmq.XPUB, sndhwm=hwm, rcvhwm=1000,
                                     max_part=SUBSCRIPTION_PART)
        else:
            self.sock = sockets.make(zmq.PUB, sndhwm=hwm, max_part=SUBSCRIPTION_PART)
            log.warning("libzmq %s: taps publish every frame on %s (an XPUB socket, which "
                        "asks first, can be crashed by a hostile subscriber before libzmq "
                        "4.3.4); set [pipeline] taps = false if none is used", zmq.zmq_version(),
                        endpoint)
        self.sockets = sockets
        self.subscriptions: Dict[bytes, int] = {}
        self.published = 0
        self.bound = False
        self.pending: List[List[Any]] = []  # end-of-stream repeats still to send
        self.checked = 0.0
        self.answers: Dict[str, bool] = {}

    def bind(self) -> None:
        """Bind, or log why not: a tap that cannot bind never stops the video."""
        try:
            self.sockets.bind(self.sock, self.endpoint, mode=0o660)  # for operators
            self.bound = True
        except Exception as exc:  # BindError and friends
            log.error("tap on %s disabled: %s", self.endpoint, exc)

    def _read_subscriptions(self) -> None:
        while True:
            try:
                event = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if not event:
                continue
            topic = bytes(event[1:])
            if event[0] == 1:
                if topic not in self.subscriptions and len(self.subscriptions) >= MAX_TOPICS:
                    continue  # a hostile subscriber cannot grow this without bound
                self.subscriptions[topic] = self.subscriptions.get(topic, 0) + 1
            elif event[0] == 0 and topic in self.subscriptions:
                self.subscriptions.pop(topic)

    def wanted(self, topic: str) -> bool:
        """Does any subscriber want ``topic``? Subscriptions are read at most every
        ``CHECK_S`` (a new tap waits that long for its first frame), so asking on
        every frame costs next to nothing."""
        if not self.bound:
            return False
        if not self.knows_subscribers:
            return True
        now = time.monotonic()
        if now - self.checked >= CHECK_S:
            self.checked = now
            self._read_subscriptions()
            self.answers.clear()
        answer = self.answers.get(topic)
        if answer is None:
            name = topic.encode()
            answer = self.answers[topic] = any(name.startswith(s) for s in self.subscriptions)
        return answer

    def publish(self, topic: str, parts: List[Any]) -> None:
        try:
            self.sock.send_multipart([topic.encode()] + list(parts), zmq.NOBLOCK, copy=True)
            self.published += 1
        except zmq.Again:  # only with XPUB_NODROP; dropping is the subscriber's gap
            pass

    def publish_end(self, topic: str, parts: List[Any], wait: bool = True) -> None:
        """End of stream: sent a few times, 50 ms apart, if anybody listens;
        ``wait=False`` leaves the repeats to ``tick()`` (a loop that must not sleep)."""
        if not self.wanted(topic):
            return
        self.publish(topic, parts)
        self.pending.append([topic, parts, EOS_REPEATS - 1, time.monotonic() + 0.05])
        while wait and self.pending:
            time.sleep(0.05)
            self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        for item in list(self.pending):
            topic, parts, left, due = item
            if now >= due:
                self.publish(topic, parts)
                item[2], item[3] = left - 1, now + 0.05
                if left - 1 <= 0:
                    self.pending.remove(item)
