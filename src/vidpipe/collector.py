"""The collector role: vid-collector, one per site.

Binds the results socket that handlers (and decoders, for drop and
end-of-stream notices) connect to, puts each camera's results back in order,
measures end-to-end latency (capture to release), counts gaps and feeds the
outputs. The pipeline runs without it; nothing upstream blocks on it.
"""

import logging
import re
import time
from typing import Any, Dict, List, Optional

import zmq

from vidpipe.link import sockets, wire
from vidpipe.analytics.scene import Scene, observe, scene_for
from vidpipe.config import Config
from vidpipe.link.ordering import DROPPED, OK, CameraOrder, Entry
from vidpipe.outputs import Output
from vidpipe.outputs.assemble import Outputs, assemble, check_requirements, web_routes
from vidpipe.link.payload import ResultReader
from vidpipe.runtime import Role
from vidpipe.service import Notifier, Stopper
from vidpipe.link.tap import TapPublisher
from vidpipe.status.web import WebServer, web_guard
from vidpipe.stats import Histogram, LatencyWindow, RateMeter, Tally, fmt_ms

log = logging.getLogger("vidpipe.collector")
POLL_SLICE = 0.05
MAX_UNKNOWN = 64  # cameras the config does not name, kept at once (udev names up to 32)
UNKNOWN_IDLE_S = 60.0  # one silent this long makes room for a new one
_REASON_BAD = re.compile(r"[^a-z0-9_:.-]")


def drop_reason(value: Any) -> str:
    """A DROP notice's reason as a metrics label: short, plain characters."""
    text = _REASON_BAD.sub("_", str(value if value is not None else "unknown").lower())[:32]
    return text or "unknown"


class CameraStats:
    def __init__(self, order: CameraOrder, scene: Optional[Scene] = None) -> None:
        self.order = order
        self.scene = scene  # tracking, zones and lines (a configured camera that asks)
        self.detect_skipped = 0  # processed frames the detectors passed by (detect_fps ...)
        self.latency = LatencyWindow()
        self.histogram = Histogram()
        self.rate = RateMeter()
        self.reported = False
        self.last_seen = 0.0  # monotonic time of its last message

    def snapshot(self) -> Dict[str, Any]:
        o = self.order
        return {"frames": o.processed, "dropped": o.dropped.as_dict(), "missing": o.missing,
                "late": o.late, "fps": round(self.rate.rate(), 2),
                "latency_p50_ms": self.latency.percentile(50),
                "latency_p99_ms": self.latency.percentile(99),
                "latency_hist": self.histogram.as_dict(), "held": len(o.pending),
                "ended": o.finished, "detect_skipped": self.detect_skipped,
                **({"areas": self.scene.counts()} if self.scene is not None else {})}

    def line(self) -> str:
        o = self.order
        return ("{}: {:.1f} fps, latency p50 {} p99 {} ms, processed {}, dropped {}, "
                "missing {}, late {}").format(
                    o.camera, self.rate.rate(), fmt_ms(self.latency.percentile(50)),
                    fmt_ms(self.latency.percentile(99)), o.processed, o.dropped.text(),
                    o.missing, o.late)


class Collector(Role):
    role = "collector"

    def __init__(self, config: Config, name: str = "main", notifier: Optional[Notifier] = None,
                 stopper: Optional[Stopper] = None,
                 outputs: Optional[List[Output]] = None) -> None:
        super().__init__(config, name, notifier, stopper)
        self.cc = config.collector
        self.timeout = config.pipeline.max_latency_ms / 1000.0
        self.cameras: Dict[str, CameraStats] = {}
        self.output_errors = Tally()
        if outputs is None:
            check_requirements(self.cc, config.path)
            built = assemble(self.cc, config.cameras, "collector " + name)
        else:
            built = Outputs(outputs, None, None)
        self.outputs, self.preview, self.recording = built
        for output in self.outputs:  # one count of each camera's figures: ours
            output.figures = self.figures
        self.tap = TapPublisher(self.sockets, self.cc.tap, config.pipeline.tap_hwm) \
            if config.pipeline.taps else None
        self.web: Optional[WebServer] = None
        self.results = self.sockets.make(zmq.PULL, rcvhwm=256)
        self.poller = zmq.Poller()
        self.poller.register(self.results, zmq.POLLIN)
        self.last_message = 0.0
        self.results_in = ResultReader(config.pipeline.runtime_dir, self.label)

    def figures(self, camera: str) -> Dict[str, Any]:
        """What the status board shows of ``camera`` (:class:`Output`'s figures)."""
        cam = self.cameras.get(camera)
        return cam.snapshot() if cam is not None else {}

    def start_web(self) -> None:
        routes = web_routes(self.cc, self.preview, self.config.pipeline.runtime_dir,
                            self.config.cameras)
        if not routes:
            return
        try:
            guard = web_guard(self.cc)
        except OSError as exc:
            log.error("collector %s: cannot read collector.http.password_file %s: %s; preview "
                      "and metrics are off", self.name, self.cc.http_password_file, exc)
            return
        self.web = WebServer(self.cc.http_listen, routes, guard)
        if self.web.start():
            log.info("collector %s: http://%s/ (%s)", self.name, self.cc.http_listen,
                     ", ".join(n for n, on in (("preview", self.preview is not None),
                                               ("recordings", "/recordings/?" in routes),
                                               ("metrics", self.cc.metrics)) if on))
        else:
            log.error("collector %s: %s; preview and metrics are off (collector.http.listen)",
                      self.name, self.web.error)
            self.web = None

    def start(self) -> None:
        self.sockets.bind(self.results, self.cc.bind)
        if self.tap is not None:
            self.tap.bind()
        for output in self.outputs:
            output.bind(self.sockets)
        self.start_web()
        log.info("collector %s: results on %s, outputs %s", self.name, self.cc.bind,
                 ",".join(self.cc.outputs) or "(none)")
        self.reporter.ready()

    def step(self) -> bool:
        """Take the results waiting, release what is due; ``False`` once every
        camera ended (with ``exit_on_eos``)."""
        self.notifier.watchdog(time.monotonic())
        if self.results in sockets.poll(self.poller, POLL_SLICE):
            self.drain(self.results, lambda msg: self.on_message(msg, time.monotonic()))
        now = time.monotonic()
        for cam in self.cameras.values():
            self.deliver(cam, cam.order.expire(now))
        self.reporter.tick(now)
        if self.tap is not None:
            self.tap.tick()
        if self.cc.exit_on_eos and self.all_ended():
            log.info("collector %s: every camera ended", self.name)
            return False
        return True

    def finish(self) -> int:
        self.flush()
        return 0

    def camera(self, name: str, now: float = 0.0) -> CameraStats:
        """The camera's state. A configured camera always has a place; of the
        others (udev names cameras the config does not) at most MAX_UNKNOWN
        are kept, and the one silent longest (over UNKNOWN_IDLE_S) makes room,
        its results released first: made-up names on the wire cannot lock
        the real cameras out."""
        cam = self.cameras.get(name)
        if cam is None:
            if not name:
                raise wire.WireError("bad_camera", "no camera name")
            if name not in self.config.cameras and not self._room_for_unknown(now):
                raise wire.WireError("bad_camera", "too many cameras the config does not name")
            order = CameraOrder(name, self.cc.reorder_window, self.timeout)
            scene = scene_for(self.config.cameras.get(name))
            cam = self.cameras[name] = CameraStats(order, scene)
        cam.last_seen = now
        return cam

    def _room_for_unknown(self, now: float) -> bool:
        unknown = [c for n, c in self.cameras.items() if n not in self.config.cameras]
        if len(unknown) < MAX_UNKNOWN:
            return True
        idlest = min(unknown, key=lambda c: c.last_seen)
        if now - idlest.last_seen < UNKNOWN_IDLE_S:
            return False
        self.deliver(idlest, idlest.order.flush())
        del self.cameras[idlest.order.camera]
        for output in self.outputs:
            self.output(output, "forget", output.forget, idlest.order.camera)
        log.info("collector %s: forgot camera %s (not configured, silent for %.0f s)",
                 self.name, idlest.order.camera, now - idlest.last_seen)
        return True

    def on_message(self, msg: wire.Message, now: float) -> None:
        head = msg.header
        try:
            cam = self.camera(head.camera, now)
        except wire.WireError as exc:
            self.bad[exc.reason] += 1
            return
        self.last_message = now
        if head.kind == wire.RESULT:
            ref = self.results_in.open(msg)
            entry = Entry(seq=head.seq, status=OK, arrived=now, message=msg)
            released = cam.order.add(head.stream, entry)
            if ref is not None and not any(e is entry for e in released):
                # held for reordering while the handler goes on reusing its
                # slots: keep a copy (the in-order case uses the slot in place)
                self.results_in.keep(msg, ref)
                ref = None
            self.deliver(cam, released)
            self.results_in.used(msg, ref)
            return
        elif head.kind == wire.DROP:
            reason = drop_reason(msg.meta.get("reason"))
            entry = Entry(seq=head.seq, status=DROPPED, arrived=now, reason=reason)
            released = cam.order.add(head.stream, entry)
        elif head.kind == wire.EOS:
            released = cam.order.end(head.stream, head.seq, msg.meta, now)
            log.info("collector %s: %s reports end of stream after %d frames (%s)", self.name,
                     head.camera, head.seq, msg.meta)
        else:
            self.bad["unexpected_kind"] += 1
            return
        self.deliver(cam, released)

    def deliver(self, cam: CameraStats, entries: List[Entry]) -> None:
        if not entries and (cam.reported or not cam.order.finished):
            return
        now_ns = time.time_ns()
        for entry in entries:
            if entry.status == OK and entry.message is not None:
                meta = entry.message.meta
                cam.detect_skipped += bool(isinstance(meta, dict) and meta.get("skipped"))
                observe(cam.scene, meta, entry.message.header.capture_ns, entry.late)
            latency = None
            if entry.status == OK and not entry.late:
                latency = (now_ns - entry.message.header.capture_ns) / 1e6
                cam.latency.add(latency)
                cam.histogram.add(latency / 1000.0)
                cam.rate.tick()
            for output in self.outputs:
                self.output(output, "emit", output.emit, cam.order.camera, entry, latency)
            if self.tap is not None:
                self._tap(cam.order, entry)
        if cam.order.finished and not cam.reported:
            cam.reported = True
            if cam.scene is not None:
                found = cam.scene.end_all(cam.scene.tracker.last_ns or 0)
                for output in self.outputs:
                    self.output(output, "scene_ended", output.scene_ended, cam.order.camera,
                                found)
            for output in self.outputs:
                self.output(output, "end_of_stream", output.end_of_stream, cam.order.camera)
            if self.tap is not None:
                o = cam.order
                self.tap.publish_end(o.camera, wire.control_parts(
                    wire.EOS, {}, o.camera, o.stream or 0, o.eos_total or 0), wait=False)
            log.info("collector %s: %s ended: %s", self.name, cam.order.camera,
                     cam.order.summary())

    def output(self, output: Output, what: str, call: Any, *args: Any) -> None:
        """Call one output: an output that fails on a result costs that output
        that result (counted by output in ``output_errors``), nothing else."""
        try:
            call(*args)
        except Exception as exc:
            name = type(output).__name__
            self.lost("{}'s {}".format(name, what), exc, self.output_errors, name)

    def _tap(self, order: CameraOrder, entry: Entry) -> None:
        camera = order.camera
        if entry.late or entry.status not in (OK, DROPPED) or not self.tap.wanted(camera):
            return
        if entry.status == OK:
            msg = entry.message
            payload = msg.payload if msg.payload is not None else b""
            parts = [msg.header.pack(), wire.meta_bytes(msg.meta), payload]
        else:
            parts = wire.control_parts(wire.DROP, {"reason": entry.reason}, camera,
                                       order.stream or 0, entry.seq)
        self.tap.publish(camera, parts)

    def all_ended(self) -> bool:
        expected = set(self.config.cameras) or set(self.cameras)
        return bool(expected) and all(
            name in self.cameras and self.cameras[name].order.finished for name in expected)

    def flush(self) -> None:
        """Release everything still held for ordering (at the end)."""
        for cam in self.cameras.values():
            self.deliver(cam, cam.order.flush())

    def why_idle(self, now: float) -> str:
        if not self.cameras or now - self.last_message > 2.0:
            return "no results arriving"
        return ""

    def status_text(self, now: Optional[float] = None) -> str:
        now = time.monotonic() if now is None else now
        parts = [cam.line() for cam in self.cameras.values()]
        head = "; ".join(parts) if parts else "collector {}: no cameras yet".format(self.name)
        brokers = ["{} {}, spooled {}".format(name, st.get("broker", "?"), st.get("depth", 0))
                   for name, st in self.output_status().items() if "broker" in st]
        return self.compose_status(head, [("malformed", self.bad),
                                          ("images lost", self.results_in.lost),
                                          ("output errors", self.output_errors),
                                          ("broker", "; ".join(brokers))],
                                   self.why_idle(now), sep="; ")

    def stats_lines(self, now: float) -> List[str]:
        lines = [cam.line() for cam in self.cameras.values()]
        if self.bad:
            lines.append("collector {}: malformed messages dropped: {}".format(
                self.name, self.bad.text()))
        if self.results_in.lost:
            lines.append("collector {}: result images lost in shared memory: {}".format(
                self.name, self.results_in.lost.text()))
        if self.output_errors:
            lines.append("collector {}: results an output failed on: {}".format(
                self.name, self.output_errors.text()))
        return lines

    def summary(self) -> Dict[str, Any]:
        return {name: dict(cam.order.summary(), latency_p50_ms=cam.latency.percentile(50),
                           latency_p99_ms=cam.latency.percentile(99))
                for name, cam in self.cameras.items()}

    def snapshot(self, now: float) -> Dict[str, Any]:
        return {"cameras": {name: cam.snapshot() for name, cam in self.cameras.items()},
                "queue_depth": sum(len(cam.order.pending) for cam in self.cameras.values()),
                "malformed": self.bad.as_dict(), "images_lost": self.results_in.lost.as_dict(),
                "output_errors": self.output_errors.as_dict(),
                "outputs": list(self.cc.outputs), "why_idle": self.why_idle(now),
                "output_status": self.output_status(),
                "recording": self.recording.status() if self.recording else None,
                "preview_encoded": self.preview.encoded if self.preview else None,
                "http": "http://{}/".format(self.cc.http_listen) if self.web else None}

    def output_status(self) -> Dict[str, Any]:
        """Each output that has something to say (e.g. ``mqtt``: broker, spool)."""
        out = {}
        for output in self.outputs:
            status = output.status()
            if status is not None:
                out[output.name or type(output).__name__] = status
        return out

    def release(self) -> None:
        for line in self.stats_lines(time.monotonic()):
            log.info("%s", line)
        if self.web is not None:
            self.web.close()
        for output in self.outputs:
            output.close()
