"""``vidpipe bench --cameras SOURCE``: how many cameras like SOURCE this box
holds, on its own CPU, GPU and decoders.

SOURCE is one of the user's cameras (``rtsp://...``: every simulated camera
opens its own session to it, as N real cameras would be) or a recording of
one (a file, read at ``--fps`` and looped through FFmpeg; with a GStreamer
``--decode`` family, through that path, as long as the file lasts). The run
starts N decoders on it (the camera's ``decode`` and delivered size as
asked), 2 handlers (stage ``gray``) and a collector, for ``--seconds``,
with N = 1, 2, ... while the box *holds* N: every camera delivers >= 95 %
of the asked frame rate, has >= 95 % of what it read processed, and the
end-to-end p99 stays under 1 s.
Each run also reports the whole pipeline's CPU per processed frame (every
process: decoders, handlers, collector, from /proc).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from vidpipe import redact
from vidpipe.tools.tomlwrite import dump_toml
from vidpipe.tools.measure import Sampler, percentile, stop_all

HELD_SHARE = 0.95
HELD_P99_MS = 1000.0
START_S = 1.5  # before the clock starts: decoders open, handlers join


def total_cpu_ms(sampler: Sampler, start: float, end: float,
                 roles: Optional[Sequence[str]] = None) -> float:
    """CPU milliseconds the sampled processes (of ``roles``, else all) used
    between two wall times."""
    first, last = sampler.at(start), sampler.at(end)
    return 1000.0 * sum(last.get(pid, 0.0) - first.get(pid, 0.0)
                        for role, pids in sampler.pids.items()
                        if roles is None or role in roles for pid in pids)


def decoder_share(sampler: Optional[Sampler], start: float, end: float, frames: int) -> float:
    """The decoders' CPU ms per frame (decode, scale, convert, hand out): the
    rest of the whole pipeline's is the handlers' and the collector's."""
    if sampler is None or not frames:
        return 0.0
    return total_cpu_ms(sampler, start, end, ("decoder",)) / frames


def camera_section(source: str, decode: str, width: int, height: int, fps: float,
                   frames: int, handlers: int, deliver: str = "bgr") -> Dict[str, Any]:
    cam: Dict[str, Any] = {"source": source, "decode": decode, "fps": fps, "frames": frames,
                           "wait_for_handlers": handlers}
    if width and height:
        cam.update(width=width, height=height)
    if deliver != "bgr":
        cam["deliver"] = deliver
    if "://" not in source:  # a recording: long enough for any run
        cam["loop"] = True
    return cam


def run_cameras(source: str, cameras: int, decode: str = "auto", width: int = 0,
                height: int = 0, fps: float = 30.0, seconds: float = 10.0,
                handlers: int = 2, deliver: str = "bgr") -> Dict[str, Any]:
    """One run of ``cameras`` decoders on ``source``: per camera what was
    processed, read and at what rate; latencies; the pipeline's CPU."""
    frames = int(seconds * fps)
    root = Path(tempfile.mkdtemp(prefix="vpc-", dir="/tmp"))
    names = ["cam{}".format(n) for n in range(cameras)]
    config = {"pipeline": {"runtime_dir": str(root / "run"), "stats_interval_s": 0,
                           "max_latency_ms": 2000},
              "cameras": {name: camera_section(source, decode, width, height, fps, frames,
                                               handlers, deliver) for name in names},
              "handlers": {"stages": ["gray"]},
              "collector": {"outputs": ["jsonl"], "exit_on_eos": True, "reorder_window": 64,
                            "jsonl": {"path": str(root / "results.jsonl")}}}
    (root / "pipeline.toml").write_text(dump_toml(config))
    here = str(Path(__file__).resolve().parents[2])  # the directory holding vidpipe/
    env = dict(os.environ, PYTHONPATH=here + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "vidpipe", "--config", str(root / "pipeline.toml"), "run"]
    logs = open(str(root / "roles.log"), "wb")
    procs: Dict[str, List[subprocess.Popen]] = {"collector": [], "handler": [], "decoder": []}

    def start(role: str, *args: str) -> None:
        procs[role].append(subprocess.Popen(cmd + [role] + list(args), env=env, stdout=logs,
                                            stderr=subprocess.STDOUT))
    try:
        start("collector")
        time.sleep(0.8)
        for n in range(1, handlers + 1):
            start("handler", str(n))
        time.sleep(0.5)
        for name in names:
            start("decoder", name)
        pids = {role: [p.pid for p in ps] for role, ps in procs.items()}
        with Sampler(pids) as sampler:
            procs["collector"][0].wait(seconds + 60 + 10 * cameras)
        return summarize(root / "results.jsonl", names, sampler)
    except subprocess.TimeoutExpired:
        return {"error": "the run did not end: {}".format(
            (root / "roles.log").read_text(errors="replace")[-2000:])}
    finally:
        stop_all(procs)
        logs.close()
        shutil.rmtree(str(root), ignore_errors=True)


def summarize(results: Path, names: List[str], sampler: Optional[Sampler]) -> Dict[str, Any]:
    records = [json.loads(line) for line in results.read_text().splitlines()] \
        if results.exists() else []
    ok = [r for r in records if r["status"] == "ok" and not r.get("late")]
    per_camera: Dict[str, Dict[str, Any]] = {}
    for name in names:
        mine = [r for r in ok if r["camera"] == name]
        lost = sum(r.get("count", 1) for r in records
                   if r["camera"] == name and (r["status"] != "ok" or r.get("late")))
        times = [r["capture_ns"] / 1e9 for r in mine]
        span = max(times) - min(times) if len(times) > 1 else 0.0
        per_camera[name] = {"processed": len(mine), "lost": lost,
                            "fps": round((len(mine) - 1) / span, 2) if span else 0.0}
    captures = [r["capture_ns"] / 1e9 for r in ok]
    cpu = total_cpu_ms(sampler, min(captures), max(captures)) \
        if captures and sampler is not None else 0.0
    shape = ok[0]["shape"] if ok else []
    return {"per_camera": per_camera, "e2e": [r["latency_ms"] for r in ok],
            "cpu_ms_per_frame": cpu / max(len(ok), 1),
            "decoder_ms_per_frame": decoder_share(sampler, min(captures), max(captures),
                                                  len(ok)) if captures else 0.0,
            "delivers": "x".join(str(v) for v in shape[1::-1]) if shape else "-"}


def held(run: Dict[str, Any], fps: float) -> bool:
    """Every camera at >= 95 % of ``fps`` with >= 95 % of its frames
    processed, and the end-to-end p99 under HELD_P99_MS."""
    if run.get("error") or not run["per_camera"]:
        return False
    p99 = percentile(run["e2e"], 99)
    for cam in run["per_camera"].values():
        if cam["processed"] < HELD_SHARE * (cam["processed"] + cam["lost"]):
            return False
        if cam["fps"] < HELD_SHARE * fps:
            return False
    return p99 is not None and p99 <= HELD_P99_MS


def search(label: str, one: Callable[[int], Dict[str, Any]], fps: float,
           most: int) -> Dict[str, Any]:
    """Runs with 1, 2, ... cameras until one is not held (or ``most``)."""
    row: Dict[str, Any] = {"path": label, "held": 0, "runs": []}
    for cameras in range(1, most + 1):
        run = one(cameras)
        good = held(run, fps)
        entry = {"cameras": cameras, "held": good, "delivers": run.get("delivers", "-"),
                 "per_camera": run.get("per_camera", {}),
                 "cpu_ms_per_frame": round(run.get("cpu_ms_per_frame", 0.0), 2),
                 "decoder_ms_per_frame": round(run.get("decoder_ms_per_frame", 0.0), 2),
                 "e2e_p50": percentile(run.get("e2e", []), 50),
                 "e2e_p99": percentile(run.get("e2e", []), 99)}
        if run.get("error"):
            entry["error"] = run["error"]
        row["runs"].append(entry)
        print(json.dumps(dict(entry, path=label)), flush=True)
        if not good:
            break
        row["held"] = cameras
    return row


def table(rows: List[Dict[str, Any]], title: str = "cameras, 2 handlers") -> str:
    base = rows[0]["runs"][0]["cpu_ms_per_frame"] or 1.0
    lines = ["| {} | delivers | cameras held | whole pipeline CPU ms / frame (1 camera) | "
             "vs first row | of which decoders / the rest | e2e p50 / p99 ms (1 camera) |"
             .format(title), "|---|---|---|---|---|---|---|"]
    for row in rows:
        first = row["runs"][0]
        decoder = first.get("decoder_ms_per_frame", 0.0)
        lines.append("| {} | {} | {} | {} | {:.2f} | {:.1f} / {:.1f} | {} / {} |".format(
            row["path"], first["delivers"], row["held"], first["cpu_ms_per_frame"],
            first["cpu_ms_per_frame"] / base, decoder, first["cpu_ms_per_frame"] - decoder,
            first["e2e_p50"], first["e2e_p99"]))
    return "\n".join(lines)


def main(source: str, decode: str, size: str, fps: float, seconds: float, most: int,
         deliver: str = "bgr") -> int:
    """``vidpipe bench --cameras SOURCE``: the search, printed as a table."""
    width, _, height = size.partition("x")
    try:
        w, h = (int(width), int(height)) if size else (0, 0)
    except ValueError:
        print("vidpipe bench: --size wants WIDTHxHEIGHT, not {!r}".format(size),
              file=sys.stderr)
        return 2
    if "://" not in source and not os.path.isfile(source):
        print("vidpipe bench: --cameras wants a camera URL or a recording, and {} is "
              "neither".format(source), file=sys.stderr)
        return 2
    if "://" not in source and decode not in ("auto", "ffmpeg"):
        source = "file://" + os.path.abspath(source)  # a GStreamer family asked for
    elif size and ("://" not in source or not source.startswith(("rtsp", "file"))):
        print("vidpipe bench: --size is the GStreamer path's: {} goes to FFmpeg at its own "
              "size (ask for a family: --decode software, nvdec, ...)".format(source),
              file=sys.stderr)
    if deliver != "bgr" and "://" not in source:
        print("vidpipe bench: --deliver is for streams: {} is read by FFmpeg in BGR (ask for "
              "a family: --decode software, nvdec, ...)".format(source), file=sys.stderr)
        return 2
    label = "{} (decode = {}{}{})".format(redact.url(source) if "://" in source else
                                          os.path.basename(source), decode,
                                          ", {}".format(size) if size else "",
                                          ", " + deliver if deliver != "bgr" else "")
    row = search(label, lambda n: run_cameras(source, n, decode, w, h, fps, seconds,
                                              deliver=deliver), fps, most)
    print(table([row], "{:g} fps cameras".format(fps)))
    print("This box holds {} camera(s) like this one at {:g} fps.".format(row["held"], fps))
    return 0
