"""Start -> READY per role, and for a handler start -> working (its stages
built and warm, joined to the decoders): p50 and max of N starts, each a
fresh process with a real notify socket, as systemd starts them.

    python3 -m tests.bench.startup            # 10 starts per role
    python3 -m tests.bench.startup --starts 3

A benchmark, not a test: it prints a markdown table (docs/performance.md quotes it)."""

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

from vidpipe.tools.tomlwrite import dump_toml  # noqa: E402


def one_start(config: Path, role: str, name: str, folder: Path,
              timeout: float = 120.0) -> Dict[str, float]:
    """Seconds from spawn to READY=1 and, for a handler, to its first STATUS
    that no longer says it is preparing."""
    path = folder / "notify-{}-{}.sock".format(role, time.monotonic_ns())
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    env = {"PYTHONPATH": str(ROOT / "src"), "NOTIFY_SOCKET": str(path), "PATH": "/usr/bin:/bin"}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "vidpipe", "--config", str(config), "run",
                             role, name], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    out: Dict[str, float] = {}
    try:
        while time.monotonic() - started < timeout:
            try:
                text = sock.recv(65536).decode("utf-8", "replace")
            except socket.timeout:
                if proc.poll() is not None:
                    raise RuntimeError("{} {} exited with {}".format(role, name,
                                                                     proc.returncode))
                continue
            now = time.monotonic() - started
            if "READY=1" in text and "ready" not in out:
                out["ready"] = now
            status = [line for line in text.splitlines() if line.startswith("STATUS=")]
            if "ready" in out and (role != "handler" or (
                    status and "preparing stages" not in status[0])):
                out["working"] = now
                return out
        raise RuntimeError("{} {}: not working within {} s".format(role, name, timeout))
    finally:
        proc.terminate()
        proc.wait(10)
        sock.close()


def measure(starts: int, stages: List[str]) -> Dict[str, List[Dict[str, float]]]:
    with tempfile.TemporaryDirectory(prefix="vp-start-", dir="/tmp") as tmp:
        folder = Path(tmp)
        config = folder / "pipeline.toml"
        config.write_text(dump_toml({
            "pipeline": {"runtime_dir": str(folder / "run")},
            "cameras": {"cam0": {"source": "testsrc"}},
            "handlers": {"stages": stages},
            "collector": {"outputs": ["log"]}}))
        results: Dict[str, List[Dict[str, float]]] = {}
        for role, name in (("collector", "main"), ("decoder", "cam0"), ("handler", "1")):
            results[role] = [one_start(config, role, name, folder) for _ in range(starts)]
        return results


def table(results: Dict[str, List[Dict[str, float]]]) -> str:
    lines = ["| role | start -> READY p50 s | max | start -> working p50 s | max |",
             "|---|---|---|---|---|"]
    for role, runs in results.items():
        ready = [r["ready"] for r in runs]
        working = [r["working"] for r in runs]
        lines.append("| {} | {:.2f} | {:.2f} | {:.2f} | {:.2f} |".format(
            role, statistics.median(ready), max(ready), statistics.median(working),
            max(working)))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.bench.startup")
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--stages", default="gray,resize,motion")
    args = parser.parse_args(argv)
    print("{} starts per role, handler stages {}, {} CPU(s)".format(
        args.starts, args.stages, len(__import__("os").sched_getaffinity(0))))
    print(table(measure(args.starts, args.stages.split(","))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
