"""``vidpipe bench``: measure the pipeline on pre-rendered frames.

Each run starts a collector, N handlers (stage ``gray``) and a decoder as
separate processes on a test pattern drawn before the clock starts (reading
a frame costs one copy into the capture buffer, as with a camera), and reads
back per-frame records from the collector:

* end-to-end latency: capture to in-order release at the collector, p50/p99;
* the decoder-to-handler hop and the handler's receive cost (message to
  NumPy array);
* delivered fps and drops; CPU milliseconds per frame and peak RSS per role
  (from /proc, sampled while the run lasts).

No result here is a pass/fail: the numbers are meant to be compared with a
baseline measured in the same run (tests/bench/run.py does that with the
seed's send_pyobj pipeline).
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from vidpipe.tools.tomlwrite import dump_toml
from vidpipe.tools.measure import Sampler, free_port, percentile, stop_all

__all__ = ["Result", "Sampler", "percentile", "run_vidpipe", "table", "SIZES"]

SIZES = {"640x480": (640, 480), "1080p": (1920, 1080), "4K": (3840, 2160)}


@dataclass
class Result:
    pipeline: str
    size: str
    handlers: int
    link: str  # shm, ipc raw, tcp raw, tcp lz4, tcp jpeg (the seed: pyobj over tcp)
    fps_target: float
    frames: int = 0
    received: int = 0
    dropped: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    e2e_p50: Optional[float] = None
    e2e_p99: Optional[float] = None
    hop_p50: Optional[float] = None
    hop_p99: Optional[float] = None
    receive_p50: Optional[float] = None
    stage_p50: Optional[float] = None  # the last stage of the chain, ms per frame
    bytes_per_frame: Optional[int] = None
    cpu_ms: Dict[str, float] = field(default_factory=dict)
    rss_mb: Dict[str, float] = field(default_factory=dict)
    note: str = ""


def run_vidpipe(size: str, handlers: int, fps: float, frames: int, link: str = "shm",
                timeout: float = 120.0, stage_ms: float = 0.0,
                stages: Optional[Dict[str, Dict[str, Any]]] = None, prefetch: int = 1,
                rss_track: Optional[Dict[str, List[Tuple[float, float]]]] = None,
                collector: Optional[Dict[str, Any]] = None, prerender: int = 8,
                camera_keys: Optional[Dict[str, Any]] = None,
                records_out: Optional[List[Dict[str, Any]]] = None) -> Result:
    """One run of vidpipe's pipeline; ``link`` is shm, ipc, or tcp-raw/-lz4/-jpeg;
    ``collector``: keys added to the collector's section (e.g. more outputs);
    ``prerender``: frames of the test pattern drawn ahead and cycled (0: each
    frame drawn anew, so the box keeps moving: what a motion stage needs);
    ``camera_keys``: set on the camera's section (``None`` removes a key: a
    file ``source`` has no ``frames``); ``records_out``: gets the run's records."""
    width, height = SIZES[size]
    root = Path(tempfile.mkdtemp(prefix="vpb-", dir="/tmp"))
    camera: Dict[str, Any] = {"source": "testsrc", "width": width, "height": height,
                              "fps": fps, "frames": frames, "prerender": prerender,
                              "wait_for_handlers": handlers}
    for key, value in (camera_keys or {}).items():
        if value is None:
            camera.pop(key, None)
        else:
            camera[key] = value
    if link == "shm":
        camera["transport"] = "shm"
    elif link == "ipc":
        camera["transport"] = "inline"
    else:  # tcp-ENCODING, or tcp-ENCODING-curve
        camera["transport"] = "inline"
        camera["bind"] = "tcp://127.0.0.1:{}".format(free_port())
        camera["encoding"] = link.split("-")[1]
    config = {
        "pipeline": {"runtime_dir": str(root / "run"), "stats_interval_s": 0,
                     "max_latency_ms": 2000},
        "cameras": {"cam0": camera},
        # across hosts the results travel in the message too
        "handlers": {"stages": list(stages) if stages else
                     ["gray"] + (["sleep"] if stage_ms else []),
                     "result_transport": "shm" if link == "shm" else "inline",
                     "prefetch": prefetch},
        "stage": dict(stages or {}, sleep={"ms": stage_ms}),
        "collector": dict({"outputs": ["jsonl"], "exit_on_eos": True, "reorder_window": 64},
                          **(collector or {}), jsonl={"path": str(root / "results.jsonl")}),
    }
    if stage_ms:
        config["pipeline"]["max_latency_ms"] = 250
    if link.endswith("-curve"):  # every tcp link encrypted, the collector's too
        from vidpipe.link.curve import keygen

        keygen(str(root / "keys"), "server")
        keygen(str(root / "keys"), "client", allow=True)
        config["security"] = {"curve": True, "keys_dir": str(root / "keys")}
        config["collector"]["bind"] = "tcp://127.0.0.1:{}".format(free_port())
    path = root / "pipeline.toml"
    path.write_text(dump_toml(config))
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    src = str(Path(__file__).resolve().parents[2])  # the directory holding vidpipe/
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "vidpipe", "--config", str(path), "run"]
    logs = open(str(root / "roles.log"), "wb")
    procs: Dict[str, List[subprocess.Popen]] = {"collector": [], "handler": [], "decoder": []}
    try:
        procs["collector"].append(subprocess.Popen(cmd + ["collector"], env=env, stdout=logs,
                                                   stderr=subprocess.STDOUT))
        time.sleep(0.8)
        for n in range(1, handlers + 1):
            procs["handler"].append(subprocess.Popen(cmd + ["handler", str(n)], env=env,
                                                     stdout=logs, stderr=subprocess.STDOUT))
        time.sleep(0.5)
        procs["decoder"].append(subprocess.Popen(cmd + ["decoder", "cam0"], env=env,
                                                 stdout=logs, stderr=subprocess.STDOUT))
        pids = {role: [p.pid for p in ps] for role, ps in procs.items()}
        with Sampler(pids) as sampler:
            procs["collector"][0].wait(timeout)
        if rss_track is not None:  # current RSS per role over time (for overload runs)
            for role in pids:
                rss_track[role] = sampler.rss_series(role)
        records = [json.loads(line) for line in (root / "results.jsonl").read_text()
                   .splitlines()]
        if records_out is not None:
            records_out.extend(records)
        ok = [r for r in records if r["status"] == "ok" and not r.get("late")]
        result = Result("vidpipe", size, handlers, link.replace("-", " "), fps, frames=frames,
                        received=len(ok))
        result.dropped = sum(1 for r in records if r["status"] == "dropped") + sum(
            r.get("count", 0) for r in records if r["status"] == "missing")
        captures = [r["capture_ns"] for r in ok]
        span = 1
        if len(captures) > 1:
            result.seconds = round((max(captures) - min(captures)) / 1e9, 3)
            result.fps = round((len(ok) - 1) / max(result.seconds, 1e-9), 2)
            span = max(1, max(r["seq"] for r in ok) - min(r["seq"] for r in ok))
        result.e2e_p50 = percentile([r["latency_ms"] for r in ok], 50)
        result.e2e_p99 = percentile([r["latency_ms"] for r in ok], 99)
        result.hop_p50 = percentile([r["meta"]["hop_ms"] for r in ok], 50)
        result.hop_p99 = percentile([r["meta"]["hop_ms"] for r in ok], 99)
        result.receive_p50 = percentile([r["meta"]["timings_ms"]["receive"] for r in ok], 50)
        last = list(stages)[-1] if stages else "gray"
        result.stage_p50 = percentile([r["meta"]["timings_ms"][last] for r in ok
                                       if last in r["meta"]["timings_ms"]], 50)
        if captures:
            result.cpu_ms, result.rss_mb = sampler.per_role(span, min(captures) / 1e9,
                                                            max(captures) / 1e9)
        result.bytes_per_frame = bytes_per_frame(link, width, height)
        return result
    finally:
        stop_all(procs)
        logs.close()
        shutil.rmtree(str(root), ignore_errors=True)


def sustained(result: Result, max_latency_ms: float = 250.0) -> bool:
    """Kept up: every frame delivered, at the rate asked, without a backlog."""
    return (result.dropped == 0 and result.received >= 0.98 * result.frames
            and result.fps >= 0.95 * result.fps_target
            and result.e2e_p99 is not None and result.e2e_p99 < max_latency_ms)


def max_sustained_fps(run: Any, rates: Sequence[float], seconds: float = 3.0) -> Result:
    """The last of ``rates`` that ``run(fps, frames)`` sustains (see ``sustained``)."""
    best = None
    for fps in rates:
        res = run(fps, int(fps * seconds))
        if not sustained(res):
            break
        best = res
    if best is None:
        res.note = "max sustained fps: below {:g}".format(rates[0])
        return res
    best.note = "max sustained fps: {:g}".format(best.fps_target)
    return best


def bytes_per_frame(link: str, width: int, height: int) -> int:
    """What one frame costs on the decoder-to-handler link."""
    from vidpipe.link import encodings, wire
    from vidpipe.capture.sources import render_testsrc

    if link == "shm":
        return wire.HEADER_SIZE + len(encodings.shm_ref("cam0-0123456789abcdef.ring", 0))
    if link in ("ipc", "tcp-raw", "tcp-raw-curve"):
        return wire.HEADER_SIZE + width * height * 3  # (+ 16 bytes of Curve MAC per part)
    encoding = encodings.ENCODING_CODES[link.split("-")[1]]
    sizes = [len(encodings.encode(render_testsrc(i, width, height), encoding)) for i in range(4)]
    return wire.HEADER_SIZE + int(statistics.mean(sizes))


COLUMNS = [("pipeline", "pipeline"), ("size", "size"), ("handlers", "handlers"),
           ("link", "link"), ("fps_target", "fps in"), ("fps", "fps out"),
           ("received", "frames"), ("dropped", "dropped"), ("e2e_p50", "e2e p50 ms"),
           ("e2e_p99", "e2e p99 ms"), ("hop_p50", "hop p50 ms"),
           ("receive_p50", "recv ms"), ("stage_p50", "stage ms p50"),
           ("bytes_per_frame", "bytes/frame")]


def table(results: List[Result]) -> str:
    roles = sorted({role for r in results for role in r.cpu_ms})
    head = [title for _key, title in COLUMNS] + ["CPU ms/frame " + r for r in roles] + \
        ["peak RSS MB " + r for r in roles] + ["note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for res in results:
        row = asdict(res)
        cells = ["-" if row[key] is None else str(row[key]) for key, _ in COLUMNS]
        cells += [str(res.cpu_ms.get(r, "-")) for r in roles]
        cells += [str(res.rss_mb.get(r, "-")) for r in roles]
        cells.append(res.note)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="vidpipe bench")
    parser.add_argument("--sizes", default="640x480,1080p,4K")
    parser.add_argument("--handlers", default="1,2,4")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--links", default="shm", help="shm,ipc,tcp-raw,tcp-lz4,tcp-jpeg")
    parser.add_argument("--prefetch", type=int, default=1,
                        help="frames each handler takes at once ([handlers] prefetch)")
    parser.add_argument("--json", metavar="FILE")
    capacity = parser.add_argument_group(
        "how many cameras this box holds", "with --cameras SOURCE (a camera's URL, or a "
        "recording: a file, looped, or a file:// URL for GStreamer) the run starts 1, 2, ... "
        "decoders on it, 2 handlers, for --seconds each, until one camera falls behind")
    capacity.add_argument("--cameras", metavar="SOURCE")
    capacity.add_argument("--decode", default="auto",
                          help="as cameras.NAME.decode (auto, ffmpeg, software, nvdec, ...)")
    capacity.add_argument("--size", default="", metavar="WxH",
                          help="delivered size (GStreamer path); default: the stream's")
    capacity.add_argument("--deliver", default="bgr", choices=("bgr", "gray", "i420"),
                          help="as cameras.NAME.deliver (a stream's pixels)")
    capacity.add_argument("--max-cameras", type=int, default=8)
    args = parser.parse_args(argv)
    if args.cameras:
        from vidpipe.tools import capacity as cap

        return cap.main(args.cameras, args.decode, args.size, args.fps, args.seconds,
                        args.max_cameras, args.deliver)
    results = []
    for size in args.sizes.split(","):
        for link in args.links.split(","):
            for handlers in (int(h) for h in args.handlers.split(",")):
                frames = int(args.fps * args.seconds)
                results.append(run_vidpipe(size, handlers, args.fps, frames, link,
                                           prefetch=args.prefetch))
                print(table(results[-1:]).splitlines()[-1], flush=True)
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 0
