"""``vidpipe tap``: subscribe to a camera's frames (seed 2's analyzer and
recorder) and count, by sequence number, every frame this subscriber missed.

Per frame it can print min/max/mean (``--stats``); on exit it saves the rows
``seq, capture_ns, min, max, mean`` as .npy (``--summary``) and what it
received as HDF5 (``--save``). The summary line at the end says how many
frames were received and missed, in how many gaps.
"""

import json
import logging
import sys
import time
from typing import Any, Dict, List, Optional, TextIO

import numpy as np
import zmq

from vidpipe.link import curve as security, sockets, wire
from vidpipe.config import Config
from vidpipe.outputs.h5store import H5Writer
from vidpipe.service import Stopper

log = logging.getLogger("vidpipe.tap")
SUMMARY_DTYPE = np.dtype([("seq", "u8"), ("capture_ns", "i8"), ("min", "f8"), ("max", "f8"),
                          ("mean", "f8")])


def tap_endpoint(config: Config, camera: str, source: str) -> str:
    if source == "collector":
        return config.collector.tap
    if camera in config.cameras:
        return config.cameras[camera].tap
    return config.unconfigured_camera(camera, "auto").tap  # what its decoder will use


class GapCounter:
    """Received and missed frames of one camera, by sequence number; a new
    stream id (the decoder restarted) starts counting afresh."""

    def __init__(self) -> None:
        self.stream: Optional[int] = None
        self.received = 0
        self.missed = 0
        self.gaps = 0
        self.first: Optional[int] = None
        self.last: Optional[int] = None
        self.ended = False
        self.upstream_dropped = 0
        self.streams = 0

    def _switch(self, stream: int) -> None:
        if stream != self.stream:
            self.stream = stream
            self.last = None
            self.streams += 1

    def _advance(self, seq: int) -> bool:
        if self.last is not None and seq <= self.last:
            return False  # a repeat (end-of-stream notices are repeated)
        if self.last is not None and seq > self.last + 1:
            self.missed += seq - self.last - 1
            self.gaps += 1
        if self.first is None:
            self.first = seq
        self.last = seq
        return True

    def frame(self, stream: int, seq: int) -> bool:
        self._switch(stream)
        if not self._advance(seq):
            return False
        self.received += 1
        return True

    def dropped(self, stream: int, seq: int) -> None:
        """The pipeline gave this frame up (collector tap): not our miss."""
        self._switch(stream)
        if self._advance(seq):
            self.upstream_dropped += 1

    def end(self, stream: int, total: int) -> None:
        """End of stream after ``total`` frames (numbered 0 .. total-1)."""
        self._switch(stream)
        if self.ended:
            return
        self.ended = True
        if self.last is not None and total - 1 > self.last:
            self.missed += total - 1 - self.last
            self.gaps += 1
        elif self.last is None and total > 0:
            self.missed += total
            self.gaps += 1

    def report(self) -> Dict[str, Any]:
        return {"received": self.received, "missed": self.missed, "gaps": self.gaps,
                "first": self.first, "last": self.last, "ended": self.ended,
                "dropped_by_pipeline": self.upstream_dropped, "streams": self.streams}


class Tap:
    def __init__(self, config: Config, camera: str, source: str = "decoder",
                 endpoint: str = "", stats: Optional[TextIO] = None,
                 summary: str = "", save: str = "", slow_ms: float = 0.0,
                 hwm: int = 4) -> None:
        self.camera = camera
        self.endpoint = endpoint or tap_endpoint(config, camera, source)
        self.stats = stats
        self.summary_path = summary
        self.save_path = save
        self.slow = slow_ms / 1000.0
        self.counter = GapCounter()
        self.rows: List[List[Any]] = []
        self.writer: Optional[H5Writer] = None
        self.max_bytes = config.pipeline.max_frame_bytes
        curve = security.make(config.security, config.path, "tap " + camera)
        self.sockets = sockets.Sockets(self.max_bytes, curve)
        self.sock = self.sockets.make(zmq.SUB, rcvhwm=hwm)
        self.sock.setsockopt(zmq.SUBSCRIBE, camera.encode())
        self.bad = 0

    def run(self, stopper: Stopper, frames: int = 0, duration: float = 0.0) -> Dict[str, Any]:
        self.sockets.connect(self.sock, self.endpoint)
        log.info("tap %s: listening on %s", self.camera, self.endpoint)
        started = time.monotonic()
        deadline = started + duration if duration else None
        said = False
        try:
            while not stopper.requested and not self.counter.ended:
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if frames and self.counter.received >= frames:
                    break
                if not self.sock.poll(200):
                    if not said and not self.counter.received and \
                            time.monotonic() - started > 3.0:
                        said = True  # a silent tap looks hung: say what it waits for
                        sys.stderr.write("tap {}: nothing yet on {} (is vid-decoder@{} "
                                         "running? Ctrl-C stops)\n".format(
                                             self.camera, self.endpoint, self.camera))
                    continue
                parts = [p.bytes for p in sockets.recv_bounded(self.sock)]
                self.on_message(parts)
        finally:
            self.close()
        return dict(self.counter.report(), camera=self.camera, endpoint=self.endpoint,
                    malformed=self.bad)

    def on_message(self, parts: List[bytes]) -> None:
        if len(parts) < 2 or parts[0] != self.camera.encode():
            return  # another camera whose name starts with ours
        try:
            msg = wire.decode(parts[1:], self.max_bytes)
        except wire.WireError:
            self.bad += 1
            return
        head = msg.header
        if head.kind == wire.EOS:
            self.counter.end(head.stream, head.seq)
        elif head.kind == wire.DROP:
            self.counter.dropped(head.stream, head.seq)
        elif head.kind in (wire.FRAME, wire.RESULT):
            if not self.counter.frame(head.stream, head.seq):
                return
            if msg.payload is not None and len(msg.payload) and head.encoding == wire.RAW:
                self.analyse(head, msg.image())
            if self.slow:
                time.sleep(self.slow)

    def analyse(self, head: wire.Header, image: np.ndarray) -> None:
        lo, hi, mean = float(image.min()), float(image.max()), float(image.mean())
        if self.summary_path:
            self.rows.append([head.seq, head.capture_ns, lo, hi, mean])
        if self.stats is not None:
            self.stats.write("{} #{} min {:g} max {:g} mean {:.2f} gaps {} missed {}\n".format(
                self.camera, head.seq, lo, hi, mean, self.counter.gaps, self.counter.missed))
        if self.save_path:
            if self.writer is None:
                self.writer = H5Writer(self.save_path, image.shape, image.dtype, self.camera)
            if image.shape == self.writer.shape and image.dtype == self.writer.dtype:
                self.writer.append(image, head.seq, head.capture_ns)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.summary_path:
            table = np.array([tuple(r) for r in self.rows], dtype=SUMMARY_DTYPE)
            np.save(self.summary_path, table)
        self.sockets.close()


def print_report(report: Dict[str, Any], as_json: bool, out: TextIO = sys.stdout) -> None:
    if as_json:
        out.write(json.dumps(report) + "\n")
        return
    out.write("tap {camera}: received {received}, missed {missed} in {gaps} gap(s), "
              "first #{first}, last #{last}, end of stream {e}\n".format(
                  e="seen" if report["ended"] else "not seen", **report))
