"""How many 1080p30 H.264 cameras this box holds: N cameras through 2
handlers (stage ``gray``), vidpipe on each decode path against the seed's
pipeline with the same decoder (OpenCV's FFmpeg).

    python3 -m tests.bench.cameras              # up to 6 cameras, 10 s each run
    python3 -m tests.bench.cameras --max 2 --seconds 4

A camera is a decoder reading the 1080p30 clip of tests/bench/decode.py
(encoded once with x264; a clip instead of an RTSP server keeps the
encoder's CPU out of the figures) paced at 30 fps. N goes up from 1 while
the box *holds* N: every camera has >= 95 % of its frames processed and the
end-to-end p99 stays under HELD_P99_MS. Each row also gives the whole
pipeline's CPU per processed frame (every process of the run: decoders,
handlers, collector), from /proc, so decoder-side scaling shows in what the
box pays in total, not just in the decoder.

The seed's pipeline (tests/bench/seed_pipeline.py's protocol: pickled frames
over PUSH/PULL) gets one decoder process per camera reading the same clip
with cv2.VideoCapture -- the same FFmpeg decoder as vidpipe's baseline path
-- and the same 2 handlers. A benchmark, not a test: it prints a markdown
table (the README quotes it)."""

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.bench.decode import FPS, clip  # noqa: E402
from vidpipe.config import dump_toml  # noqa: E402
from vidpipe.tools.bench import Sampler, percentile, stop_all  # noqa: E402

HELD_SHARE = 0.95
HELD_P99_MS = 1000.0
HANDLERS = 2
#: label -> (decode, delivered width, height); width 0: the stream's own size
PATHS = {"vidpipe, FFmpeg (as the seed)": ("ffmpeg", 0, 0),
         "vidpipe, GStreamer": ("software", 1920, 1080),
         "vidpipe, GStreamer scaled to 640x360": ("software", 640, 360)}


def _total_cpu_ms(sampler: Sampler, start: float, end: float) -> float:
    first, last = sampler._at(start), sampler._at(end)  # noqa: SLF001 (same package's helper)
    return 1000.0 * sum(last.get(pid, 0.0) - first.get(pid, 0.0)
                        for pids in sampler.pids.values() for pid in pids)


def run_vidpipe(path: Path, cameras: int, decode: str, width: int, height: int,
                frames: int) -> Dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="vpc-", dir="/tmp"))
    cams = {}
    for n in range(cameras):
        cam: Dict[str, Any] = {"source": str(path) if decode == "ffmpeg" else
                               "file://{}".format(path), "decode": decode, "fps": FPS,
                               "frames": frames, "wait_for_handlers": HANDLERS}
        if width:
            cam.update(width=width, height=height)
        cams["cam{}".format(n)] = cam
    config = {"pipeline": {"runtime_dir": str(root / "run"), "stats_interval_s": 0,
                           "max_latency_ms": 2000},
              "cameras": cams,
              "handlers": {"stages": ["gray"]},
              "collector": {"outputs": ["jsonl"], "exit_on_eos": True, "reorder_window": 64,
                            "jsonl_path": str(root / "results.jsonl")}}
    (root / "pipeline.toml").write_text(dump_toml(config))
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep +
               os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "vidpipe", "--config", str(root / "pipeline.toml"), "run"]
    logs = open(str(root / "roles.log"), "wb")
    procs: Dict[str, List[subprocess.Popen]] = {"collector": [], "handler": [], "decoder": []}

    def start(role: str, *args: str) -> None:
        procs[role].append(subprocess.Popen(cmd + [role] + list(args), env=env, stdout=logs,
                                            stderr=subprocess.STDOUT))
    try:
        start("collector")
        time.sleep(0.8)
        for n in range(1, HANDLERS + 1):
            start("handler", str(n))
        time.sleep(0.5)
        for name in cams:
            start("decoder", name)
        pids = {role: [p.pid for p in ps] for role, ps in procs.items()}
        with Sampler(pids) as sampler:
            procs["collector"][0].wait(frames / FPS + 120)
        records = [json.loads(line) for line in
                   (root / "results.jsonl").read_text().splitlines()]
        ok = [r for r in records if r["status"] == "ok" and not r.get("late")]
        per_camera = {name: sum(1 for r in ok if r["camera"] == name) for name in cams}
        captures = [r["capture_ns"] / 1e9 for r in ok]
        cpu = _total_cpu_ms(sampler, min(captures), max(captures)) if captures else 0.0
        shape = ok[0]["shape"] if ok else []
        return {"per_camera": per_camera, "e2e": [r["latency_ms"] for r in ok],
                "cpu_ms_per_frame": cpu / max(len(ok), 1),
                "delivers": "x".join(str(v) for v in shape[1::-1]) if shape else "-"}
    finally:
        stop_all(procs)
        logs.close()
        shutil.rmtree(str(root), ignore_errors=True)


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
    from vidpipe.tools.bench import _free_port

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    in_ports = [_free_port() for _ in range(cameras)]
    out_port = _free_port()
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
    cpu = _total_cpu_ms(sampler, data["first"], data["last"]) if data["e2e"] else 0.0
    return {"per_camera": {"cam{}".format(n): data["cameras"].get(n, 0)
                           for n in range(cameras)},
            "e2e": data["e2e"], "cpu_ms_per_frame": cpu / max(len(data["e2e"]), 1),
            "delivers": "1920x1080"}


# ---------------------------------------------------------------- the search

def held(run: Dict[str, Any], frames: int) -> bool:
    p99 = percentile(run["e2e"], 99)
    return all(n >= HELD_SHARE * frames for n in run["per_camera"].values()) and \
        p99 is not None and p99 <= HELD_P99_MS


def measure(label: str, one: Any, frames: int, most: int) -> Dict[str, Any]:
    """Runs with 1, 2, ... cameras until one is not held."""
    row: Dict[str, Any] = {"path": label, "held": 0, "runs": []}
    for cameras in range(1, most + 1):
        run = one(cameras)
        good = held(run, frames)
        row["runs"].append({"cameras": cameras, "held": good,
                            "processed": run["per_camera"], "delivers": run["delivers"],
                            "cpu_ms_per_frame": round(run["cpu_ms_per_frame"], 2),
                            "e2e_p50": percentile(run["e2e"], 50),
                            "e2e_p99": percentile(run["e2e"], 99)})
        print(json.dumps(dict(row["runs"][-1], path=label)), flush=True)
        if not good:
            break
        row["held"] = cameras
    return row


def run(seconds: float = 10.0, most: int = 6) -> List[Dict[str, Any]]:
    frames = int(seconds * FPS)
    path = clip(frames)
    rows = [measure("seed (pickle), FFmpeg", lambda n: run_seed(path, n, frames), frames, most)]
    for label, (decode, width, height) in PATHS.items():
        rows.append(measure(label, lambda n, d=decode, w=width, h=height:
                            run_vidpipe(path, n, d, w, h, frames), frames, most))
    return rows


def table(rows: List[Dict[str, Any]]) -> str:
    base = rows[0]["runs"][0]["cpu_ms_per_frame"] or 1.0
    lines = ["| 1080p30 H.264 cameras, 2 handlers | delivers | cameras held | whole pipeline "
             "CPU ms / frame (1 camera) | vs seed | e2e p50 / p99 ms (1 camera) |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        first = row["runs"][0]
        lines.append("| {} | {} | {} | {} | {:.2f} | {} / {} |".format(
            row["path"], first["delivers"], row["held"], first["cpu_ms_per_frame"],
            first["cpu_ms_per_frame"] / base, first["e2e_p50"], first["e2e_p99"]))
    return "\n".join(lines)


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
