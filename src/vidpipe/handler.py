"""The handler role: vid-handler@N, as many as the box has cores for.

Connects to every decoder (those in the config, plus any decoder socket that
appears in the runtime directory later) and to the collector, runs its stage
chain on each frame and sends the result on. Every frame it receives ends
as a RESULT or a DROP notice at the collector, and as a returned credit at
the decoder. It never blocks on a missing collector.
"""

import glob
import logging
import os
import stat
import threading
import time
from typing import Any, Dict, List, Optional, Set, Tuple

import numpy as np
import zmq

from vidpipe import accel, security, transport, wire
from vidpipe.codec import FrameDecoder, result_ref
from vidpipe.config import Config, ConfigError
from vidpipe.ring import ResultRing, results_dir
from vidpipe.board import Board
from vidpipe.service import Notifier, Reporter, Stopper, pin_cpus
from vidpipe.stages import Frame, Stage, build_chain
from vidpipe.stats import LatencyWindow, RateMeter, Tally, fmt_ms, often

log = logging.getLogger("vidpipe.handler")
DISCOVERY_INTERVAL = 1.0
#: the longest a handler may take to build and warm its chain after READY
#: (OpenCV's import under emulation, a model's load); the watchdog's timeout
#: is raised to it meanwhile, and past it systemd restarts the handler
PREPARE_TIMEOUT_S = 300.0
MAX_CAMERAS = 1024  # per-camera counters: the names come from the wire
WARMUP = "\0warm-up"


def choose_accelerator(config: Config, name: str) -> str:
    """The accelerator handler ``name``'s stages get: the configured one when the
    box has it, else the CPU (``fallback = "cpu"``) or a config error."""
    hc = config.handler(name)
    if hc.accelerator == "cpu":
        return "cpu"
    own = "accelerator" in config.handler_overrides.get(name, {})
    key = "handlers.{}.accelerator".format(name) if own else "handlers.accelerator"
    try:
        return accel.choose(hc.accelerator, hc.fallback, accel.detect())
    except accel.AcceleratorMissing as exc:
        raise ConfigError(config.path, key, str(exc)) from None


class Handler:
    def __init__(self, config: Config, name: str, notifier: Optional[Notifier] = None,
                 stopper: Optional[Stopper] = None) -> None:
        self.config = config
        self.name = name
        self.hc = config.handler(name)
        self.notifier = notifier or Notifier({})
        self.stopper = stopper or Stopper()
        self.section = "handlers.{}".format(name) if "stages" in \
            config.handler_overrides.get(name, {}) else "handlers"
        self.accelerator = choose_accelerator(config, name)
        #: built after READY by :meth:`prepare` (OpenCV's import is most of a start)
        self.chain: List[Stage] = []
        self.prepared = threading.Event()
        self.prepare_error: Optional[BaseException] = None
        self.prepare_started = 0.0
        self.joined = False  # connected to the decoders (after prepare)
        pipe = config.pipeline
        self.mode = pipe.dispatch
        self.max_latency_ns = pipe.max_latency_ms * 1_000_000
        self.heartbeat = pipe.heartbeat_ms / 1000.0
        self.cpus: List[int] = []
        self.processed = 0
        self.dropped = Tally()
        self.bad = Tally()
        self.undelivered = 0
        self.latency = LatencyWindow()
        self.rate = RateMeter()
        self.frames = FrameDecoder(pipe.runtime_dir)
        self.result_ring: Optional[ResultRing] = None
        if self.hc.send_image and (self.hc.result_transport == "shm" or (
                self.hc.result_transport == "auto"
                and config.collector.connect.startswith("ipc://"))):
            self.result_ring = ResultRing(results_dir(pipe.runtime_dir), name,
                                          self.hc.result_ring_mb * 1024 * 1024)
        curve = security.make(config.security, config.path, "handler " + name)
        self.sockets = transport.Sockets(pipe.max_frame_bytes, curve)
        self.results = self.sockets.make(zmq.PUSH, sndhwm=16, receives=False, immediate=True)
        self.inputs: Dict[str, zmq.Socket] = {}  # endpoint -> socket
        self.refused: Set[str] = set()  # socket files found that are not ours
        self.poller = zmq.Poller()
        self.last_beat = 0.0
        self.last_discovery = 0.0
        self.per_camera = Tally()  # processed frames by camera
        self.camera_drops: Dict[str, Tally] = {}
        self.reporter = Reporter(self.notifier, pipe.stats_interval_s, self.status_text,
                                 board=Board(pipe.runtime_dir, "handler", name),
                                 snapshot=self.snapshot)
        self.last_frame_at = 0.0

    # ------------------------------------------------------------------ sockets

    def connect_decoder(self, endpoint: str) -> None:
        if endpoint in self.inputs:
            return
        if self.mode == "round-robin":
            sock = self.sockets.make(zmq.PULL, rcvhwm=1)
        else:
            sock = self.sockets.make(zmq.DEALER, sndhwm=1000, rcvhwm=self.hc.prefetch + 1)
        self.sockets.connect(sock, endpoint)
        self.inputs[endpoint] = sock
        self.poller.register(sock, zmq.POLLIN)
        self._credit(sock, wire.NO_SEQ, 0)  # announce ourselves at once
        log.info("handler %s: connected to decoder %s", self.name, endpoint)

    def discover(self) -> None:
        """Connect to decoder sockets that appeared in the runtime directory."""
        pattern = os.path.join(self.config.pipeline.runtime_dir, "decoder-*.sock")
        for path in sorted(glob.glob(pattern)):
            if "ipc://" + path in self.inputs or not self._ours(path):
                continue
            self.connect_decoder("ipc://" + path)

    def _ours(self, path: str) -> bool:
        """A socket our own user made (the decoders run as we do): group members
        can create files in the runtime directory, but not feed us frames."""
        try:
            info = os.lstat(path)
        except OSError:
            return False
        if stat.S_ISSOCK(info.st_mode) and info.st_uid == os.geteuid():
            return True
        if path not in self.refused:
            self.refused.add(path)
            log.warning("handler %s: ignoring %s (not a socket of uid %d)", self.name, path,
                        os.geteuid())
        return False

    def _credit(self, sock: zmq.Socket, seq: int, stream: int) -> None:
        if self.mode == "round-robin":
            return
        meta = {"handler": self.name, "window": self.hc.prefetch}
        transport.send_nowait(sock, wire.control_parts(wire.CREDIT, meta, stream=stream,
                                                       seq=seq))

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
        if stateful and self.mode != "by-camera":
            log.warning("handler %s: stage(s) %s need consecutive frames of a camera; with "
                        "dispatch = %r they see only some of them (use \"by-camera\")",
                        self.name, ", ".join(stateful), self.mode)

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
                      allocate=self.result_ring.claim if self.result_ring else None)
        try:
            for stage in self.chain:
                stage.process(frame)
            if self.result_ring is not None:  # (only made when images are sent)
                self.result_ring.claim(frame.image.shape, frame.image.dtype.name)
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
        threading.Thread(target=self.prepare, name="prepare", daemon=True).start()

    def _prepared(self, now: float) -> bool:
        """Whether the chain is ready (joining the decoders the first time); feeds
        the watchdog, while preparing only up to ``PREPARE_TIMEOUT_S``."""
        if not self.joined:
            if not self.prepared.is_set():
                if now - self.prepare_started <= PREPARE_TIMEOUT_S:
                    self.notifier.watchdog(now)
                return False
            if self.prepare_error is not None:
                raise self.prepare_error
            log.info("handler %s: stages %s, dispatch %s, cpus %s, accelerator %s (ready "
                     "%.1f s after READY)", self.name,
                     ",".join(s.name for s in self.chain) or "(none)", self.mode,
                     ",".join(map(str, self.cpus)), self.accelerator,
                     now - self.prepare_started)
            for cam in self.config.cameras.values():
                self.connect_decoder(cam.connect)
            self.discover()
            self.last_discovery = now
            self.joined = True
            self.notifier.restore_watchdog()
            self.reporter.refresh(now)  # STATUS says at once that it is working now
        self.notifier.watchdog(now)  # from the loop that does the work
        return True

    def run(self) -> int:
        self.start()
        try:
            while not self.stopper.requested:
                self.step(self.heartbeat / 2)
            return 0
        finally:
            self.close()

    def step(self, timeout: float) -> None:
        now = time.monotonic()
        if not self._prepared(now):  # feeds the watchdog meanwhile
            self.reporter.tick(now)
            self.prepared.wait(min(timeout, 0.1))
            return
        if now - self.last_beat >= self.heartbeat:
            self.last_beat = now
            for sock in self.inputs.values():
                self._credit(sock, wire.NO_SEQ, 0)
        if now - self.last_discovery >= DISCOVERY_INTERVAL:
            self.last_discovery = now
            self.discover()
        self.reporter.tick(now)
        events = transport.poll(self.poller, min(timeout, 0.1))
        for sock in list(self.inputs.values()):
            if sock in events:
                started = time.perf_counter()
                parts = transport.recv_parts(sock)
                if parts is None:
                    continue
                try:
                    known = self.frames.known(parts)  # most frames: a few bytes read
                    if known is not None:
                        self.handle(sock, *known, started)
                    else:
                        self.decode(sock, parts, started)
                except Exception as exc:  # one message costs that message, never us
                    count = self.bad.add("internal_error")
                    if often(count):
                        log.exception("handler %s: message lost (%d so far): %s",
                                      self.name, count, exc)

    def decode(self, sock: zmq.Socket, parts: List[Any], started: float) -> None:
        """A message :meth:`FrameDecoder.known` did not take, checked in full."""
        msg = transport.decode_parts(parts, self.bad, self.sockets.max_bytes)
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
                          image=pixels, meta={},
                          allocate=self.result_ring.claim if self.result_ring else None)
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
            parts = self.result(head, frame, pixels, ref is not None, meta)
            if transport.send_nowait(self.results, parts):
                self.processed += 1
                if head.camera in self.per_camera or len(self.per_camera) < MAX_CAMERAS:
                    self.per_camera[head.camera] += 1
                self.rate.tick()
                self.latency.add((time.time_ns() - head.capture_ns) / 1e6)
            else:
                self.undelivered += 1
        finally:
            self._credit(sock, head.seq, head.stream)

    def result(self, head: wire.Header, frame: Frame, pixels: np.ndarray, in_slot: bool,
               meta: Dict[str, Any]) -> List[Any]:
        """The RESULT message for ``frame``: its image in our shared-memory ring
        (no copy when a stage wrote it there), or inline."""
        image = frame.image if self.hc.send_image else None
        args = (meta, head.camera, head.stream, head.seq, head.capture_ns)
        if image is not None and self.result_ring is not None:
            ref = self.result_ring.publish(image)
            if ref is not None:
                return wire.result_parts(image, *args, encoding=wire.SHM,
                                         payload=result_ref(*ref))
        if image is not None and in_slot and np.may_share_memory(image, pixels):
            image = image.copy()  # the slot goes back to the decoder with our credit
        return wire.result_parts(image, *args)

    def run_chain(self, frame: Frame) -> Optional[Dict[str, float]]:
        """Run every stage; per-stage milliseconds, or ``None`` if a stage failed."""
        timings: Dict[str, float] = {}
        for stage in self.chain:
            started = time.perf_counter()
            try:
                stage.process(frame)
            except Exception as exc:  # a plugin's bug must not kill the handler
                count = self.bad.add("stage_error:" + stage.name)
                if often(count):
                    log.exception("handler %s: stage %s failed on %s #%d (%d so far): %s",
                                  self.name, stage.name, frame.camera, frame.seq, count, exc)
                return None
            elapsed = (time.perf_counter() - started) * 1000.0
            timings[stage.name] = round(elapsed, 3)
        return timings

    def _give_up(self, sock: zmq.Socket, head: wire.Header, reason: str) -> None:
        """Drop a frame before processing it, and return its credit."""
        try:
            self._drop(head, reason)
        finally:
            self._credit(sock, head.seq, head.stream)

    def _drop(self, head: wire.Header, reason: str) -> None:
        self.dropped[reason] += 1
        if head.camera in self.camera_drops or len(self.camera_drops) < MAX_CAMERAS:
            self.camera_drops.setdefault(head.camera, Tally())[reason] += 1
        parts = wire.control_parts(wire.DROP, {"reason": reason, "handler": self.name},
                                   head.camera, head.stream, head.seq, head.capture_ns)
        if not transport.send_nowait(self.results, parts):
            self.undelivered += 1

    # ------------------------------------------------------------------ status

    def why_idle(self, now: float) -> str:
        if not self.joined:
            return "preparing stages ({:.0f} s so far)".format(now - self.prepare_started)
        if self.undelivered and not self.processed:
            return "collector unreachable"
        if now - self.last_frame_at > 2.0:
            return "no frames from decoders ({} connected)".format(len(self.inputs))
        return ""

    def status_text(self, now: Optional[float] = None) -> str:
        now = time.monotonic() if now is None else now
        text = "handler {}: {:.1f} fps, processed {}, latency p50 {} p99 {} ms, dropped {}" \
            .format(self.name, self.rate.rate(now), self.processed,
                    fmt_ms(self.latency.percentile(50)), fmt_ms(self.latency.percentile(99)),
                    self.dropped.text())
        if self.accelerator != "cpu":
            text += ", on {}".format(self.accelerator)
        if self.undelivered:
            text += ", undelivered {}".format(self.undelivered)
        if self.bad:
            text += ", malformed {}".format(self.bad.text())
        why = self.why_idle(now)
        return text + (" - " + why if why else "")

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
                "decoders": len(self.inputs), "undelivered": self.undelivered,
                "malformed": self.bad.as_dict(),
                "why_idle": self.why_idle(now)}

    def close(self) -> None:
        self.reporter.publish(time.monotonic(), "stopped")
        self.notifier.stopping()
        for sock in self.inputs.values():
            if self.mode != "round-robin":
                transport.send_nowait(sock, wire.control_parts(
                    wire.BYE, {"handler": self.name}))
                sock.setsockopt(zmq.LINGER, 200)  # let the BYE out
        self.results.setsockopt(zmq.LINGER, 500)  # results already queued still go out
        log.info("%s", self.status_text())
        self.sockets.close()  # waits for the queued results to go out
        if self.result_ring is not None:
            self.result_ring.close()

