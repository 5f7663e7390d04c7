"""How many 1080p30 H.264 cameras this box holds: N cameras through 2
handlers (stage ``gray``), vidpipe on each decode path against the seed's
pipeline with the same decoder (OpenCV's FFmpeg).

    python3 -m tests.bench.cameras              # up to 6 cameras, 10 s each run
    python3 -m tests.bench.cameras --max 2 --seconds 4

A camera is a decoder reading the 1080p30 clip of tests/bench/decode.py
(encoded once with x264; a clip instead of an RTSP server keeps the
encoder's CPU out of the figures) paced at 30 fps. The search is
``vidpipe bench --cameras``'s (vidpipe.tools.capacity, which users run on
their own box with their own camera): N goes up from 1 while the box
*holds* N -- every camera at >= 95 % of 30 fps with >= 95 % of its frames
processed, end-to-end p99 under 1 s. Each row also gives the whole
pipeline's CPU per processed frame (every process of the run: decoders,
handlers, collector), from /proc, so decoder-side scaling shows in what the
box pays in total, not just in the decoder.

The seed's pipeline (tests/bench/seed_pipeline.py's protocol: pickled frames
over PUSH/PULL) gets one decoder process per camera reading the same clip
with cv2.VideoCapture -- the same FFmpeg decoder as vidpipe's baseline path
-- and the same 2 handlers. A benchmark, not a test: it prints a markdown
table (docs/performance.md quotes it)."""

import argparse
import multiprocessing
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.bench.decode import FPS, clip  # noqa: E402
from vidpipe.tools.measure import Sampler, free_port  # noqa: E402
from vidpipe.tools.capacity import (decoder_share, run_cameras, search,  # noqa: E402
                                    total_cpu_ms)
from vidpipe.tools.capacity import table as capacity_table  # noqa: E402

HANDLERS = 2
#: label -> (decode, delivered width, height, deliver); width 0: the stream's own size
PATHS = {"vidpipe, FFmpeg (as the seed)": ("ffmpeg", 0, 0, "bgr"),
         "vidpipe, GStreamer": ("software", 1920, 1080, "bgr"),
         "vidpipe, GStreamer scaled to 640x360": ("software", 640, 360, "bgr"),
         "vidpipe, GStreamer scaled to 640x360, I420": ("software", 640, 360, "i420")}


# ---------------------------------------------------------------- the seed, N cameras

def _seed_decoder(port: int, path: str, camera: int, count: int) -> None:
    """The seed's decoder on a clip: cv2.VideoCapture, paced at FPS, pickled."""
    import cv2
    import zmq

    context = zmq.Context()
    dst = context.socket(zmq.PUSH)
    dst.set_hwm(2 * FPS)  # for measuring only: 2 s of 1080p, not the default 1000 frames
    dst.bind("tcp://127.0.0.1:{}".format(port))
    cap = cv2.VideoCapture(path)
    time.sleep(1.0)
    due = time.monotonic()
    for _ in range(count):
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        due += 1.0 / FPS
        ok, frame = cap.read()
        if not ok:
            break
        dst.send_pyobj(dict(frame=frame, ts=time.time(), camera=camera))
    time.sleep(2.0)
    dst.close(linger=1000)
    context.term()


def _seed_handler(in_ports: List[int], out_port: int) -> None:
    import cv2
    import zmq

    context = zmq.Context()
    src = context.socket(zmq.PULL)
    for port in in_ports:
        src.connect("tcp://127.0.0.1:{}".format(port))
    dst = context.socket(zmq.PUSH)
    dst.connect("tcp://127.0.0.1:{}".format(out_port))
    while True:
        msg = src.recv_pyobj()
        gray = cv2.cvtColor(msg["frame"], cv2.COLOR_BGR2GRAY)
        dst.send_pyobj(dict(frame=gray, ts=msg["ts"], camera=msg["camera"]))


def _seed_visualizer(port: int, count: int, out: Any) -> None:
    import zmq

    context = zmq.Context()
    sock = context.socket(zmq.PULL)
    sock.bind("tcp://127.0.0.1:{}".format(port))
    e2e: List[float] = []
    cameras: Dict[int, int] = {}
    first = last = 0.0
    while len(e2e) < count and sock.poll(5000):
        msg = sock.recv_pyobj()
        last = time.time()
        first = first or last
        e2e.append((last - msg["ts"]) * 1000.0)
        cameras[msg["camera"]] = cameras.get(msg["camera"], 0) + 1
    out.put({"e2e": e2e, "cameras": cameras, "first": first, "last": last})


def run_seed(path: Path, cameras: int, frames: int) -> Dict[str, Any]:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    in_ports = [free_port() for _ in range(cameras)]
    out_port = free_port()
    viz = ctx.Process(target=_seed_visualizer, args=(out_port, frames * cameras, queue),
                      daemon=True)
    workers = [ctx.Process(target=_seed_handler, args=(in_ports, out_port), daemon=True)
               for _ in range(HANDLERS)]
    decoders = [ctx.Process(target=_seed_decoder, args=(port, str(path), n, frames),
                            daemon=True) for n, port in enumerate(in_ports)]
    for proc in [viz] + workers + decoders:
        proc.start()
    pids = {"decoder": [p.pid for p in decoders], "handler": [w.pid for w in workers],
            "collector": [viz.pid]}
    try:
        with Sampler(pids) as sampler:
            data: Dict[str, Any] = queue.get(timeout=frames / FPS + 120)
    finally:
        for proc in [viz] + workers + decoders:
            if proc.is_alive():
                proc.terminate()
            proc.join(5)
    cpu = total_cpu_ms(sampler, data["first"], data["last"]) if data["e2e"] else 0.0
    decoder = decoder_share(sampler, data["first"], data["last"], len(data["e2e"]))
    span = data["last"] - data["first"]
    return {"per_camera": {"cam{}".format(n): {
                "processed": data["cameras"].get(n, 0),
                "lost": frames - data["cameras"].get(n, 0),
                "fps": round((data["cameras"].get(n, 0) - 1) / span, 2) if span else 0.0}
                for n in range(cameras)},
            "e2e": data["e2e"], "cpu_ms_per_frame": cpu / max(len(data["e2e"]), 1),
            "decoder_ms_per_frame": decoder,
            "delivers": "1920x1080"}


# ---------------------------------------------------------------- the search

def run(seconds: float = 10.0, most: int = 6) -> List[Dict[str, Any]]:
    frames = int(seconds * FPS)
    path = clip(frames)
    rows = [search("seed (pickle), FFmpeg", lambda n: run_seed(path, n, frames), FPS, most)]
    for label, (decode, width, height, deliver) in PATHS.items():
        source = str(path) if decode == "ffmpeg" else "file://{}".format(path)
        rows.append(search(label, lambda n, s=source, d=decode, w=width, h=height, p=deliver:
                           run_cameras(s, n, d, w, h, FPS, seconds, deliver=p), FPS, most))
    return rows


def table(rows: List[Dict[str, Any]]) -> str:
    return capacity_table(rows, "1080p30 H.264 cameras, 2 handlers")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    parser.add_argument("--max", type=int, default=6, help="most cameras tried")
    args = parser.parse_args(argv)
    rows = run(args.seconds, args.max)
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
