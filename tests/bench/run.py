"""The benchmark: vidpipe against the seed's pipeline, side by side, one run.

    python3 -m tests.bench.run            # everything (about 8 minutes on 2 cores)
    python3 -m tests.bench.run --quick    # one small comparison (seconds)

Prints markdown tables (also written to build/bench.md) and the raw figures as
JSON (build/bench.json). Latency ratios are vidpipe / seed from the same run:
absolute times on a shared machine are noise, ratios much less so.
"""

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from vidpipe.tools.bench import (SIZES, Result, max_sustained_fps, run_vidpipe,  # noqa: E402
                           table)
from tests.bench.seed_pipeline import run_seed  # noqa: E402

TARGETS = {"640x480": 0.75, "1080p": 0.2, "4K": 0.1}
RATES = {"640x480": [60, 120, 240, 480], "1080p": [30, 60, 120, 240], "4K": [15, 30, 45, 60]}


def ratio(a: Optional[float], b: Optional[float]) -> Optional[float]:
    return round(a / b, 3) if a is not None and b else None


def ratio_table(pairs: List[Dict[str, Result]]) -> str:
    lines = ["| size | handlers | seed e2e p50 ms | vidpipe e2e p50 ms | ratio | target | "
             "seed CPU ms/frame decoder | vidpipe | vidpipe handler recv ms |",
             "|---|---|---|---|---|---|---|---|---|"]
    for pair in pairs:
        seed, vp = pair["seed"], pair["vidpipe"]
        r = ratio(vp.e2e_p50, seed.e2e_p50)
        target = TARGETS.get(vp.size)
        mark = "" if r is None or target is None else (" ok" if r <= target else " MISSED")
        lines.append("| {} | {} | {} | {} | {}{} | <= {} | {} | {} | {} |".format(
            vp.size, vp.handlers, seed.e2e_p50, vp.e2e_p50, r, mark, target,
            seed.cpu_ms.get("decoder"), vp.cpu_ms.get("decoder"), vp.receive_p50))
    return "\n".join(lines)


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return "{} cores ({}), {}, Python {}".format(os.cpu_count(), cpu, platform.platform(),
                                                 platform.python_version())


def overload(seconds: float, out: Path) -> int:
    """2 handlers that take 100 ms a frame (20 fps together) against a 200 fps source."""
    track: Dict[str, List] = {}
    res = run_vidpipe("640x480", 2, 200.0, int(200 * seconds), "shm",
                      timeout=seconds + 120, stage_ms=100.0, rss_track=track)
    lines = ["# vidpipe overload run", "", "Machine: " + machine(), "",
             "Command: `python3 -m tests.bench.run --overload {:g}`".format(seconds), "",
             "Source 200 fps, 2 handlers x 100 ms/frame; {} processed, {} dropped, e2e p99 "
             "{} ms.".format(res.received, res.dropped, res.e2e_p99), "",
             "| role | RSS MB after 10% of the run | RSS MB at the end | drift |",
             "|---|---|---|---|"]
    for role, series in sorted(track.items()):
        series = [(t, mb) for t, mb in series if mb > 0]
        if len(series) < 10:
            continue
        early = series[len(series) // 10][1]
        late = series[-1][1]
        lines.append("| {} | {:.1f} | {:.1f} | {:+.1f}% |".format(role, early, late,
                                                                 (late - early) / early * 100))
    text = "\n".join(lines)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "overload.md").write_text(text)
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.bench.run")
    parser.add_argument("--quick", action="store_true", help="one small comparison")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of paced runs")
    parser.add_argument("--soak", type=float, default=60.0, help="4K@30 soak length (0: skip)")
    parser.add_argument("--out", default=str(ROOT / "build"), help="where to write results")
    parser.add_argument("--overload", type=float, default=0, metavar="SECONDS",
                        help="only: source 10x faster than the handlers for SECONDS; "
                        "report RSS drift per role")
    args = parser.parse_args(argv)
    if args.overload:
        return overload(args.overload, Path(args.out))
    sizes = ["640x480"] if args.quick else list(SIZES)
    handler_counts = [2] if args.quick else [1, 2, 4]
    seconds = 2.0 if args.quick else args.seconds
    fps = 30.0
    results: List[Result] = []
    pairs: List[Dict[str, Result]] = []
    started = time.monotonic()

    def keep(res: Result) -> Result:
        results.append(res)
        print(table([res]).splitlines()[-1], flush=True)
        return res

    for size in sizes:
        w, h = SIZES[size]
        for n in handler_counts:
            frames = int(fps * seconds)
            seed = keep(run_seed(size, w, h, n, fps, frames))
            vp = keep(run_vidpipe(size, n, fps, frames, "shm"))
            pairs.append({"seed": seed, "vidpipe": vp})
    if not args.quick:
        for size in sizes:  # the highest rate each keeps up with, 2 handlers
            w, h = SIZES[size]
            rates = RATES[size]
            keep(max_sustained_fps(lambda f, n: run_seed(size, w, h, 2, f, n), rates))
            keep(max_sustained_fps(lambda f, n: run_vidpipe(size, 2, f, n, "shm"), rates))
        if "640x480" in sizes:  # jitter at a high rate: credits of 1 vs 2 per handler
            for attempt in range(1, 6):
                for prefetch in (1, 2):
                    keep(run_vidpipe("640x480", 2, 480.0, 1440, "shm", prefetch=prefetch)
                         ).note = "480 fps, prefetch {}, run {}".format(prefetch, attempt)
        for size in sizes:  # links to other hosts
            for link in ("tcp-raw", "tcp-lz4", "tcp-jpeg"):
                keep(run_vidpipe(size, 2, fps, int(fps * seconds), link)).note = "across hosts"
        for size in ("640x480", "1080p"):  # what CurveZMQ costs on those links
            if size in sizes:
                keep(run_vidpipe(size, 2, fps, int(fps * seconds), "tcp-raw-curve")).note = \
                    "across hosts, CurveZMQ"
        # the dnn stage (tests/data/red_blobs.onnx, OpenCV DNN) on the CPU
        model = str(ROOT / "tests" / "data" / "red_blobs.onnx")
        dnn = {"dnn": {"model": model, "output": "heatmap", "input_width": 320,
                       "input_height": 240}}
        for size in sizes:
            keep(run_vidpipe(size, 2, fps, int(fps * seconds), "shm", stages=dnn)).note = \
                "dnn stage (CPU)"
        if args.soak:
            w, h = SIZES["4K"]
            frames = int(30 * args.soak)
            keep(run_seed("4K", w, h, 2, 30.0, frames)).note = "4K@30 soak"
            keep(run_vidpipe("4K", 2, 30.0, frames, "shm")).note = "4K@30 soak"

    report = ["# vidpipe benchmark", "", "Machine: " + machine(), "",
              "Command: `python3 -m tests.bench.run{}` ({:.0f} s)".format(
                  " --quick" if args.quick else "", time.monotonic() - started), "",
              "## End-to-end latency, vidpipe / seed (same frames, same run)", "",
              ratio_table(pairs), "", "## All runs", "", table(results), ""]
    text = "\n".join(report)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(text)
    (out / "bench.json").write_text(json.dumps({"machine": machine(), "results": [
        asdict(r) for r in results]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
