"""The seed's pipeline (../shared/seeds/000_*.txt), as published, as the baseline.

decoder: PUSH bind tcp://127.0.0.1, ``send_pyobj(dict(frame=frame, ts=time()))``
handler: PULL connect / PUSH connect, ``recv_pyobj()``, ``cv2.cvtColor(BGR2GRAY)``,
``send_pyobj(...)``; visualizer: PULL bind, ``recv_pyobj()``.

Two changes, both for measuring only: the handler forwards ``ts`` (and the
time it received the frame) with the gray frame so the visualizer can compute
end-to-end and per-hop latency, and the decoder paces itself at ``fps`` on
pre-rendered frames (the seed reads a webcam, which paces it). This module
runs the pickle protocol between its own processes only, on loopback: it is
the thing vidpipe replaces, kept here to measure against.
"""

import multiprocessing
import os
import time
from typing import Any, Dict, List

import cv2
import zmq

from vidpipe.tools.bench import Result, Sampler, percentile
from vidpipe.capture.sources import render_testsrc


def _decoder(port: int, frames: List[Any], fps: float, count: int) -> None:
    context = zmq.Context()
    dst = context.socket(zmq.PUSH)
    dst.bind("tcp://127.0.0.1:{}".format(port))
    time.sleep(1.0)  # the seed's decoder blocks until handlers connect; give them time
    period = 1.0 / fps if fps else 0.0
    due = time.monotonic()
    for i in range(count):
        if period:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            due += period
        frame = frames[i % len(frames)]
        dst.send_pyobj(dict(frame=frame, ts=time.time()))
    time.sleep(2.0)
    dst.close(linger=1000)
    context.term()


def _handler(in_port: int, out_port: int) -> None:
    context = zmq.Context()
    src = context.socket(zmq.PULL)
    src.connect("tcp://127.0.0.1:{}".format(in_port))
    dst = context.socket(zmq.PUSH)
    dst.connect("tcp://127.0.0.1:{}".format(out_port))
    while True:
        msg = src.recv_pyobj()
        received = time.time()
        gray = cv2.cvtColor(msg["frame"], cv2.COLOR_BGR2GRAY)
        dst.send_pyobj(dict(frame=gray, ts=msg["ts"], received=received))


def _visualizer(port: int, count: int, out: Any) -> None:
    context = zmq.Context()
    sock = context.socket(zmq.PULL)
    sock.bind("tcp://127.0.0.1:{}".format(port))
    e2e, hop = [], []
    first = last = None
    while len(e2e) < count:
        if not sock.poll(5000):
            break  # frames stopped coming
        msg = sock.recv_pyobj()
        now = time.time()
        first = first or now
        last = now
        e2e.append((now - msg["ts"]) * 1000.0)
        hop.append((msg["received"] - msg["ts"]) * 1000.0)
    out.put({"e2e": e2e, "hop": hop, "seconds": (last - first) if first else 0.0,
             "first": first or 0.0, "last": last or 0.0})


def run_seed(size: str, width: int, height: int, handlers: int, fps: float, count: int,
             timeout: float = 300.0) -> Result:
    import socket

    def port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    frames = [render_testsrc(i, width, height) for i in range(8)]
    in_port, out_port = port(), port()
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    viz = ctx.Process(target=_visualizer, args=(out_port, count, queue), daemon=True)
    viz.start()
    workers = [ctx.Process(target=_handler, args=(in_port, out_port), daemon=True)
               for _ in range(handlers)]
    for worker in workers:
        worker.start()
    dec = ctx.Process(target=_decoder, args=(in_port, frames, fps, count), daemon=True)
    dec.start()
    pids = {"decoder": [dec.pid], "handler": [w.pid for w in workers], "collector": [viz.pid]}
    try:
        with Sampler(pids) as sampler:
            data: Dict[str, Any] = queue.get(timeout=timeout)
            viz.join(5)
    finally:
        for proc in [dec, viz] + workers:
            if proc.is_alive():
                proc.terminate()
            proc.join(5)
    result = Result("seed", size, handlers, "pyobj tcp", fps, frames=count,
                    received=len(data["e2e"]))
    result.dropped = count - len(data["e2e"])
    result.seconds = round(data["seconds"], 3)
    result.fps = round((len(data["e2e"]) - 1) / data["seconds"], 2) if data["seconds"] else 0
    result.e2e_p50, result.e2e_p99 = percentile(data["e2e"], 50), percentile(data["e2e"], 99)
    result.hop_p50, result.hop_p99 = percentile(data["hop"], 50), percentile(data["hop"], 99)
    result.cpu_ms, result.rss_mb = sampler.per_role(max(1, len(data["e2e"]) - 1),
                                                    data["first"], data["last"])
    result.bytes_per_frame = len(__import__("pickle").dumps(dict(frame=frames[0], ts=0.0),
                                                             protocol=-1))
    result.note = "collector = the seed's visualizer"
    return result


if __name__ == "__main__":  # pragma: no cover - manual use
    print(run_seed("640x480", 640, 480, 2, 30.0, 150))
    os._exit(0)
