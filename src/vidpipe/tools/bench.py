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
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from vidpipe.config import dump_toml

SIZES = {"640x480": (640, 480), "1080p": (1920, 1080), "4K": (3840, 2160)}
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


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


def percentile(values: Sequence[float], pct: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))], 3)


class Sampler:
    """CPU time and peak RSS of some processes, read from /proc while they run."""

    def __init__(self, pids: Dict[str, List[int]]) -> None:
        self.pids = pids
        self.cpu: Dict[int, float] = {}
        self.rss: Dict[int, int] = {}
        self.series: List[Tuple[float, Dict[int, float]]] = []  # (wall time, cpu by pid)
        self.current: Dict[int, int] = {}  # VmRSS, kB
        self.rss_now: List[Tuple[float, Dict[int, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _read(self) -> None:
        for pids in self.pids.values():
            for pid in pids:
                try:
                    with open("/proc/{}/stat".format(pid)) as handle:
                        fields = handle.read().rsplit(")", 1)[1].split()
                    self.cpu[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICK
                    with open("/proc/{}/status".format(pid)) as handle:
                        for line in handle:
                            if line.startswith("VmHWM:"):
                                self.rss[pid] = int(line.split()[1])
                            elif line.startswith("VmRSS:"):
                                self.current[pid] = int(line.split()[1])
                except (OSError, IndexError, ValueError):
                    pass

    def _loop(self) -> None:
        while not self._stop.wait(0.05):
            self._read()
            self.series.append((time.time(), dict(self.cpu)))
            self.rss_now.append((time.time(), dict(self.current)))

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def rss_series(self, role: str) -> List[Tuple[float, float]]:
        """(wall time, largest current RSS in MB among the role's processes) samples."""
        return [(when, max(rss.get(pid, 0) for pid in self.pids[role]) / 1024.0)
                for when, rss in self.rss_now]

    def _at(self, when: float) -> Dict[int, float]:
        best = min(self.series, key=lambda item: abs(item[0] - when)) if self.series else None
        return best[1] if best else {}

    def per_role(self, frames: int, start: float, end: float
                 ) -> Tuple[Dict[str, float], Dict[str, float]]:
        """CPU ms per frame between ``start`` and ``end`` (wall clock; start-up and
        imports excluded) and peak RSS per role (ring pages shared between
        processes count in each of them)."""
        first, last = self._at(start), self._at(end)
        cpu, rss = {}, {}
        for role, pids in self.pids.items():
            seconds = [last.get(pid, 0.0) - first.get(pid, 0.0) for pid in pids]
            cpu[role] = round(statistics.mean(seconds) * 1000.0 / max(frames, 1), 3)
            rss[role] = round(max(self.rss.get(pid, 0) for pid in pids) / 1024.0, 1)
        return cpu, rss


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_vidpipe(size: str, handlers: int, fps: float, frames: int, link: str = "shm",
                timeout: float = 120.0, stage_ms: float = 0.0,
                stages: Optional[Dict[str, Dict[str, Any]]] = None, prefetch: int = 1,
                rss_track: Optional[Dict[str, List[Tuple[float, float]]]] = None,
                collector: Optional[Dict[str, Any]] = None, prerender: int = 8) -> Result:
    """One run of vidpipe's pipeline; ``link`` is shm, ipc, or tcp-raw/-lz4/-jpeg;
    ``collector``: keys added to the collector's section (e.g. more outputs);
    ``prerender``: frames of the test pattern drawn ahead and cycled (0: each
    frame drawn anew, so the box keeps moving: what a motion stage needs)."""
    width, height = SIZES[size]
    root = Path(tempfile.mkdtemp(prefix="vpb-", dir="/tmp"))
    camera: Dict[str, Any] = {"source": "testsrc", "width": width, "height": height,
                              "fps": fps, "frames": frames, "prerender": prerender,
                              "wait_for_handlers": handlers}
    if link == "shm":
        camera["transport"] = "shm"
    elif link == "ipc":
        camera["transport"] = "inline"
    else:  # tcp-ENCODING, or tcp-ENCODING-curve
        camera["transport"] = "inline"
        camera["bind"] = "tcp://127.0.0.1:{}".format(_free_port())
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
                          **(collector or {}), jsonl_path=str(root / "results.jsonl")),
    }
    if stage_ms:
        config["pipeline"]["max_latency_ms"] = 250
    if link.endswith("-curve"):  # every tcp link encrypted, the collector's too
        from vidpipe.security import keygen

        keygen(str(root / "keys"), "server")
        keygen(str(root / "keys"), "client", allow=True)
        config["security"] = {"curve": True, "keys_dir": str(root / "keys")}
        config["collector"]["bind"] = "tcp://127.0.0.1:{}".format(_free_port())
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


def stop_all(procs: Dict[str, List[subprocess.Popen]]) -> None:
    """Terminate every role of a run, then kill what has not gone in 5 s."""
    for ps in procs.values():
        for proc in ps:
            if proc.poll() is None:
                proc.terminate()
    for ps in procs.values():
        for proc in ps:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


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
    from vidpipe import codec, wire
    from vidpipe.sources import render_testsrc

    if link == "shm":
        return wire.HEADER_SIZE + len(codec.shm_ref("cam0-0123456789abcdef.ring", 0))
    if link in ("ipc", "tcp-raw", "tcp-raw-curve"):
        return wire.HEADER_SIZE + width * height * 3  # (+ 16 bytes of Curve MAC per part)
    encoding = codec.ENCODING_CODES[link.split("-")[1]]
    sizes = [len(codec.encode(render_testsrc(i, width, height), encoding)) for i in range(4)]
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
    args = parser.parse_args(argv)
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
