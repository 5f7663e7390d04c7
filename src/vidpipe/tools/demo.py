"""``vidpipe demo``: the whole pipeline as separate processes in one command.

Writes a configuration into a private runtime directory (so it never clashes
with installed services), starts the collector, N handlers and the decoder
as child processes (``python -m vidpipe run ...``) and stops them all on
Ctrl-C, or when a finite source has been fully processed.
"""

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

from vidpipe.capture import cameras
from vidpipe import redact
from vidpipe.config import load_config
from vidpipe.tools.tomlwrite import dump_toml

log = logging.getLogger("vidpipe.demo")


def _die_with_parent() -> None:
    """In a child: get SIGTERM when the demo dies, even by SIGKILL (Linux prctl)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def pick_source(source: Optional[str]) -> str:
    """``--source`` as given, else the first camera found, else the test pattern."""
    if source:
        return source
    try:
        found = cameras.list_capture_devices()
    except Exception as exc:  # no udev (containers): fall back quietly
        log.debug("camera discovery failed: %s", exc)
        found = []
    if found:
        log.info("using the first camera found: %s (%s)", found[0].best_path, found[0].card)
        return found[0].best_path
    return "testsrc"


def demo_config(runtime_dir: str, source: str, args: Any) -> Dict[str, Any]:
    camera: Dict[str, Any] = {"source": source, "width": args.width, "height": args.height,
                              "fps": args.fps, "frames": args.frames}
    if getattr(args, "credentials", None):
        camera["credentials_file"] = os.path.abspath(args.credentials)
    if source == "testsrc" or not source.startswith("/dev/"):
        camera["wait_for_handlers"] = args.handlers if args.dispatch != "round-robin" else 0
    collector: Dict[str, Any] = {"outputs": ["log"], "exit_on_eos": True}
    if args.display:
        collector["outputs"].append("display")
    if args.http:
        collector["outputs"].append("preview")
        collector["http"] = {"listen": args.http, "metrics": True}
    if args.jsonl:
        collector["outputs"].append("jsonl")
        collector["jsonl"] = {"path": os.path.abspath(args.jsonl), "checksum": True}
    return {
        "pipeline": {"dispatch": args.dispatch, "runtime_dir": runtime_dir,
                     "stats_interval_s": args.stats_interval,
                     "max_latency_ms": args.max_latency_ms},
        "cameras": {"cam0": camera},
        "handlers": {"stages": args.stages.split(",") if args.stages else []},
        "collector": collector,
    }


def run_demo(args: Any) -> int:
    runtime_dir = tempfile.mkdtemp(prefix="vidpipe-demo-")
    procs: List[subprocess.Popen] = []
    try:
        source = pick_source(args.source)
        path = os.path.join(runtime_dir, "pipeline.toml")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(dump_toml(demo_config(runtime_dir, source, args)))
        load_config(path)  # fail early, with the config error, before starting anything
        cmd = [sys.executable, "-m", "vidpipe", "--config", path, "run"]
        print("vidpipe demo: {} -> {} handler(s) [{}] -> collector; Ctrl-C stops".format(
            redact.url(source), args.handlers, args.stages or "no stages"), flush=True)
        if args.http:
            print("vidpipe demo: live preview at http://{0}/ (metrics: http://{0}/metrics)"
                  .format(args.http), flush=True)
        collector = subprocess.Popen(cmd + ["collector", "main"], preexec_fn=_die_with_parent)
        procs.append(collector)
        time.sleep(0.3)
        for n in range(1, args.handlers + 1):
            procs.append(subprocess.Popen(cmd + ["handler", str(n)],
                                          preexec_fn=_die_with_parent))
        procs.append(subprocess.Popen(cmd + ["decoder", "cam0"], preexec_fn=_die_with_parent))
        return _wait(procs, collector, args.duration)
    except KeyboardInterrupt:
        return 0
    finally:
        _stop(procs)
        shutil.rmtree(runtime_dir, ignore_errors=True)


def _wait(procs: List[subprocess.Popen], collector: subprocess.Popen,
          duration: float) -> int:
    deadline = time.monotonic() + duration if duration else None
    interrupted = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(1))
    signal.signal(signal.SIGTERM, lambda *_: interrupted.append(1))
    try:
        while not interrupted:
            if collector.poll() is not None:
                return collector.returncode
            dead = [p for p in procs if p.poll() not in (None, 0)]
            if dead:
                print("vidpipe demo: {} exited with status {}".format(
                    " ".join(dead[0].args[-2:]), dead[0].returncode), file=sys.stderr)
                return 1
            if deadline is not None and time.monotonic() > deadline:
                return 0
            time.sleep(0.1)
        return 0
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop(procs: List[subprocess.Popen]) -> None:
    # decoder first so the others can drain, then handlers, then the collector
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 3.0
    for proc in reversed(procs):
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
