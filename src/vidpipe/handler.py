"""The handler role: vid-handler@N, as many as the box has cores for.

Connects to every decoder (those in the config, plus any decoder socket that
appears in the runtime directory later) and to the collector, runs its stage
chain on each frame and sends the result on. Every frame it receives ends
as a RESULT or a DROP notice at the collector, and as a returned credit at
the decoder. It never blocks on a missing collector.
"""

import logging
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import zmq

from vidpipe.link import sockets, wire
from vidpipe.host.accel import for_handler
from vidpipe.config import Config, ConfigError
from vidpipe.link.intake import DecoderLinks
from vidpipe.link.payload import FrameReader, ResultWriter
from vidpipe.runtime import Role
from vidpipe.service import Notifier, Stopper, pin_cpus
from vidpipe.stages import I420, Frame, Stage, build_chain
from vidpipe.stages.base import detect_now
from vidpipe.stages.region import motion_regions, run_in_regions
from vidpipe.stats import LatencyWindow, RateMeter, Tally, fmt_ms

log = logging.getLogger("vidpipe.handler")
#: the longest a handler may take to build and warm its chain after READY
#: (OpenCV's import under emulation, a model's load); the watchdog's timeout
#: is raised to it meanwhile, and past it systemd restarts the handler
PREPARE_TIMEOUT_S = 300.0
#: how long a prepared handler waits for its link to the collector before it
#: asks decoders for frames anyway (their results then count as undelivered)
COLLECTOR_WAIT_S = 10.0
MAX_CAMERAS = 1024  # per-camera counters: the names come from the wire
WARMUP = "\0warm-up"


class Handler(Role):
    role = "handler"

    def __init__(self, config: Config, name: str, notifier: Optional[Notifier] = None,
                 stopper: Optional[Stopper] = None) -> None:
        self.hc = config.handler(name)
        super().__init__(config, name, notifier, stopper)
        self.section = "handlers.{}".format(name) if "stages" in \
            config.handler_overrides.get(name, {}) else "handlers"
        self.accelerator = for_handler(config, name)
        #: built after READY by :meth:`prepare` (OpenCV's import is most of a start)
        self.chain: List[Stage] = []
        self.prepared = threading.Event()
        self.prepared_at: Optional[float] = None  # when the chain was found ready
        self.prepare_error: Optional[BaseException] = None
        self.prepare_started = 0.0
        self.joined = False  # connected to the decoders (after prepare)
        pipe = config.pipeline
        self.max_latency_ns = pipe.max_latency_ms * 1_000_000
        self.heartbeat = pipe.heartbeat_ms / 1000.0
        self.decoders = DecoderLinks(self.sockets, config, name, self.hc.prefetch)
        self.cpus: List[int] = []
        self.processed = 0
        self.dropped = Tally()
        self.undelivered = 0
        self.latency = LatencyWindow()
        self.rate = RateMeter()
        self.frames = FrameReader(pipe.runtime_dir)
        self.results_out = ResultWriter(pipe.runtime_dir, name, self.hc,
                                        config.collector.connect)
        self.results = self.sockets.make(zmq.PUSH, sndhwm=16, receives=False, immediate=True)
        self.per_camera = Tally()  # processed frames by camera
        self.camera_drops: Dict[str, Tally] = {}
        self.last_frame_at = 0.0

    # ------------------------------------------------------------------ start

    def build(self) -> None:
        """The stage chain, on the accelerator if it can run there."""
        try:
            self.chain = build_chain(self.config, self.hc.stages, self.section,
                                     self.accelerator)
        except ConfigError as exc:
            if self.accelerator == "cpu" or self.hc.fallback != "cpu":
                raise
            log.warning("handler %s: cannot run on %s (%s); on the CPU instead "
                        "(fallback = \"cpu\")", self.name, self.accelerator, exc.message)
            self.accelerator = "cpu"
            self.chain = build_chain(self.config, self.hc.stages, self.section, "cpu")
        stateful = [s.name for s in self.chain if getattr(s, "stateful", False)]
        dispatch = self.config.pipeline.dispatch
        if stateful and dispatch != "by-camera":
            log.warning("handler %s: stage(s) %s need consecutive frames of a camera; with "
                        "dispatch = %r they see only some of them (use \"by-camera\")",
                        self.name, ", ".join(stateful), dispatch)

    def prepare(self) -> None:
        """Build and warm the chain (in a thread after READY: the main loop keeps
        the watchdog fed and the status current meanwhile)."""
        try:
            self.build()
            self.warm_up()
        except BaseException as exc:  # handed to the main loop, which raises it
            self.prepare_error = exc
        finally:
            self.prepared.set()

    def warm_up(self) -> None:
        """Run the chain once on a blank frame before taking real ones: the first
        call into OpenCV (thread pool, kernels) costs tens of milliseconds."""
        cam = next(iter(self.config.cameras.values()), None)
        width, height = (cam.width, cam.height) if cam else (640, 480)
        # with a result ring, made here too (sized by the first result)
        frame = Frame(camera=WARMUP, seq=0, capture_ns=0,
                      image=np.zeros((height, width, 3), np.uint8),
                      allocate=self.results_out.allocate)
        try:
            for stage in self.chain:
                stage.process(frame)
            self.results_out.prepare(frame.image)
        except Exception as exc:  # a stage that fails here will be reported per frame
            log.debug("handler %s: warm-up: %s", self.name, exc)
        for stage in self.chain:
            state = getattr(stage, "state", None)
            if isinstance(state, dict):
                state.pop(WARMUP, None)

    def start(self) -> None:
        """READY once the config is valid and the results socket is up; the
        chain is built behind it, and decoders are joined once it is warm."""
        self.cpus = pin_cpus(self.hc.cpus)
        self.sockets.connect(self.results, self.config.collector.connect)
        self.prepare_started = time.monotonic()
        self.reporter.ready()
        # importing OpenCV holds the interpreter for seconds (a minute under
        # emulation): no ping could get out, so the watchdog waits longer
        self.notifier.extend_watchdog(PREPARE_TIMEOUT_S)
        # nothing to finish until the decoders are joined, and the import holds
        # the interpreter: a stop meanwhile is the kernel's (Stopper)
        self.stopper.let_kernel_stop()
        threading.Thread(target=self.prepare, name="prepare", daemon=True).start()

    def _prepared(self, now: float) -> bool:
        """Whether the chain is ready (joining the decoders the first time); feeds
        the watchdog, while preparing only up to ``PREPARE_TIMEOUT_S``."""
        if not self.joined:
            if not self.prepared.is_set():
                if now - self.prepare_started <= PREPARE_TIMEOUT_S:
                    self.notifier.watchdog(now)
                return False
            self.stopper.take_back()
            if self.prepare_error is not None:
                raise self.prepare_error
            if not self._collector_linked(now):
                self.notifier.watchdog(now)
                return False
            log.info("handler %s: stages %s, dispatch %s, cpus %s, accelerator %s (ready "
                     "%.1f s after READY)", self.name,
                     ",".join(s.name for s in self.chain) or "(none)",
                     self.config.pipeline.dispatch,
                     ",".join(map(str, self.cpus)), self.accelerator,
                     now - self.prepare_started)
            self.decoders.join([cam.connect for cam in self.config.cameras.values()], now)
            self.joined = True
            self.notifier.restore_watchdog()
            self.reporter.refresh(now)  # STATUS says at once that it is working now
        self.notifier.watchdog(now)  # from the loop that does the work
        return True

    def _collector_linked(self, now: float) -> bool:
        """Whether results can go to the collector now: frames asked for before
        that would be processed for nothing (the results socket queues only on
        a connection that is up). Waits up to COLLECTOR_WAIT_S after the chain
        is ready, then goes on, saying so."""
        if self.results.poll(0, zmq.POLLOUT):
            return True
        if self.prepared_at is None:
            self.prepared_at = now
        if now - self.prepared_at < COLLECTOR_WAIT_S:
            return False
        log.warning("handler %s: no link to the collector at %s after %.0f s; taking frames "
                    "anyway (their results are counted as undelivered until it is there)",
                    self.name, self.config.collector.connect, COLLECTOR_WAIT_S)
        return True

    def step(self) -> bool:
        timeout = self.heartbeat / 2
        now = time.monotonic()
        if not self._prepared(now):  # feeds the watchdog meanwhile
            self.reporter.tick(now)
            self.prepared.wait(min(timeout, 0.1))
            return True
        self.decoders.tick(now)
        self.reporter.tick(now)
        for sock, parts, started in self.decoders.receive(min(timeout, 0.1)):
            self.fenced("message", self.receive, sock, parts, started)
        return True

    def receive(self, sock: zmq.Socket, parts: List[Any], started: float) -> None:
        known = self.frames.known(parts)  # most frames: a few bytes read
        if known is not None:
            self.handle(sock, *known, started)
        else:
            self.decode(sock, parts, started)

    def decode(self, sock: zmq.Socket, parts: List[Any], started: float) -> None:
        """A message :meth:`FrameReader.known` did not take, checked in full."""
        msg = sockets.decode_parts(parts, self.bad, self.sockets.max_bytes)
        if msg is None:
            return
        head = msg.header
        if head.kind != wire.FRAME:
            self.bad["unexpected_kind"] += 1
            return
        if time.time_ns() - head.capture_ns > self.max_latency_ns:
            self._give_up(sock, head, "stale")  # not worth reading its pixels
            return
        try:
            pixels, where = self.frames.image(msg)
        except wire.WireError as exc:  # a frame we cannot read is still accounted for
            self.bad[exc.reason] += 1
            self._give_up(sock, head, exc.reason)
            return
        self.frames.learn(parts, head, pixels, where)
        self.handle(sock, head, pixels, where, started)

    def handle(self, sock: zmq.Socket, head: wire.Header, pixels: np.ndarray,
               ref: Optional[Tuple[str, int]], started: float) -> None:
        """Process one frame (``ref``: its shared-memory slot) and return the
        decoder's credit, whatever happens."""
        receive_ms = (time.perf_counter() - started) * 1000.0
        self.last_frame_at = time.monotonic()
        try:
            now_ns = time.time_ns()
            if now_ns - head.capture_ns > self.max_latency_ns:
                self._drop(head, "stale")
                return
            frame = Frame(camera=head.camera, seq=head.seq, capture_ns=head.capture_ns,
                          image=pixels, meta={}, allocate=self.results_out.allocate,
                          format=I420 if head.flags & wire.FLAG_I420 else "")
            timings = self.run_chain(frame)
            if timings is None:
                self._drop(head, "stage_error")
                return
            if not self.frames.still_valid(ref, head.seq):
                self._drop(head, "torn")  # the slot was rewritten while we used it
                return
            timings["receive"] = round(receive_ms, 4)
            meta: Dict[str, Any] = dict(frame.meta)
            meta["handler"] = self.name
            meta["timings_ms"] = timings
            meta["hop_ms"] = round((now_ns - head.capture_ns) / 1e6, 3)
            parts = self.results_out.parts(head, frame.image, pixels, ref is not None, meta,
                                           wire.FLAG_I420 if frame.format == I420 else 0)
            if sockets.send_nowait(self.results, parts):
                self.processed += 1
                if head.camera in self.per_camera or len(self.per_camera) < MAX_CAMERAS:
                    self.per_camera[head.camera] += 1
                self.rate.tick()
                self.latency.add((time.time_ns() - head.capture_ns) / 1e6)
            else:
                self.undelivered += 1
        finally:
            self.decoders.credit(sock, head.seq, head.stream, head.camera)

    def run_chain(self, frame: Frame) -> Optional[Dict[str, float]]:
        """Run every stage; per-stage milliseconds, or ``None`` if a stage failed.
        A detector on a frame its camera's ``detect_fps``/``detect_when`` does
        not choose is passed by and named in ``meta["skipped"]``."""
        timings: Dict[str, float] = {}
        skipped: List[str] = []
        cam = self.config.cameras.get(frame.camera)
        by_region = cam is not None and cam.detect_when == "motion-region"
        regions: Any = False  # where the detectors look: found at the first that runs
        for stage in self.chain:
            detector = getattr(stage, "detector", False)
            if detector:
                if not detect_now(cam, frame):
                    skipped.append(stage.name)
                    continue
                if regions is False:  # motion comes before the detectors (check-config)
                    regions = motion_regions(frame) if by_region else None
            started = time.perf_counter()
            try:
                if detector and regions is not None:
                    run_in_regions(stage, frame, regions)
                else:
                    stage.process(frame)
            except Exception as exc:  # a plugin's bug costs the frame, never the handler
                self.lost("{} #{} in stage {}".format(frame.camera, frame.seq, stage.name),
                          exc, label="stage_error:" + stage.name)
                return None
            elapsed = (time.perf_counter() - started) * 1000.0
            timings[stage.name] = round(elapsed, 3)
        if skipped:
            frame.meta["skipped"] = skipped
        return timings

    def _give_up(self, sock: zmq.Socket, head: wire.Header, reason: str) -> None:
        """Drop a frame before processing it, and return its credit."""
        try:
            self._drop(head, reason)
        finally:
            self.decoders.credit(sock, head.seq, head.stream, head.camera)

    def _drop(self, head: wire.Header, reason: str) -> None:
        self.dropped[reason] += 1
        if head.camera in self.camera_drops or len(self.camera_drops) < MAX_CAMERAS:
            self.camera_drops.setdefault(head.camera, Tally())[reason] += 1
        parts = wire.control_parts(wire.DROP, {"reason": reason, "handler": self.name},
                                   head.camera, head.stream, head.seq, head.capture_ns)
        if not sockets.send_nowait(self.results, parts):
            self.undelivered += 1

    # ------------------------------------------------------------------ status

    def why_idle(self, now: float) -> str:
        if not self.joined:
            if self.prepared_at is not None:
                return "waiting for the collector ({:.0f} s so far)".format(
                    now - self.prepared_at)
            return "preparing stages ({:.0f} s so far)".format(now - self.prepare_started)
        if self.undelivered and not self.processed:
            return "collector unreachable"
        if now - self.last_frame_at > 2.0:
            return "no frames from decoders ({} connected)".format(len(self.decoders))
        return ""

    def status_text(self, now: Optional[float] = None) -> str:
        now = time.monotonic() if now is None else now
        head = "handler {}: {:.1f} fps, processed {}, latency p50 {} p99 {} ms, dropped {}" \
            .format(self.name, self.rate.rate(now), self.processed,
                    fmt_ms(self.latency.percentile(50)), fmt_ms(self.latency.percentile(99)),
                    self.dropped.text())
        return self.compose_status(head, [
            ("on", self.accelerator if self.accelerator != "cpu" else ""),
            ("undelivered", self.undelivered), ("malformed", self.bad)], self.why_idle(now))

    def snapshot(self, now: float) -> Dict[str, Any]:
        cameras = {cam: {"frames": self.per_camera[cam],
                         "dropped": self.camera_drops[cam].as_dict()
                         if cam in self.camera_drops else {}}
                   for cam in set(self.per_camera) | set(self.camera_drops)}
        return {"cameras": cameras,
                "frames": self.processed, "dropped": self.dropped.as_dict(),
                "fps": round(self.rate.rate(now), 2),
                "latency_p50_ms": self.latency.percentile(50),
                "latency_p99_ms": self.latency.percentile(99),
                "stages": list(self.hc.stages), "accelerator": self.accelerator,
                "decoders": len(self.decoders), "undelivered": self.undelivered,
                "malformed": self.bad.as_dict(),
                "why_idle": self.why_idle(now)}

    def release(self) -> None:
        self.decoders.leave()
        self.results.setsockopt(zmq.LINGER, 500)  # results already queued still go out
        log.info("%s", self.status_text())

    def unmap(self) -> None:
        self.results_out.close()
