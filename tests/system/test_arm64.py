"""The package on arm64 (a Raspberry Pi OS / Jetson-class CPU), for real:
Debian 12 and Debian 11 arm64 roots under qemu-user, ``apt-get install
./vidpipe.deb`` from the root's own cache, then the whole pipeline (decoder →
2 handlers → collector) over 300 frames of the test pattern. The frames must
arrive complete and in order, and be bit-identical to the same run on this
(amd64) machine. See foreign.py for what a chroot proves and what it does not.
The two roots are built and installed side by side (see run_suite).
"""

import concurrent.futures
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from conftest import ROOT
from system import foreign
from system.conftest import need_root

pytestmark = pytest.mark.system

FRAMES = 300
#: small and slow enough that two emulated handlers keep up: none may be
#: dropped for capacity, and none arrives too late for the ordering window
DEMO = ["demo", "--source", "testsrc", "--frames", str(FRAMES), "--handlers", "2",
        "--width", "320", "--height", "240", "--fps", "10", "--max-latency-ms", "20000",
        "--stats-interval", "10", "--http", ""]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> List[Dict[str, object]]:
    """The same demo on this machine, from the source tree."""
    out = tmp_path_factory.mktemp("amd64") / "results.jsonl"
    subprocess.run([sys.executable, "-m", "vidpipe"] + DEMO + ["--jsonl", str(out)],
                   env=dict(os.environ, PYTHONPATH=str(ROOT / "src")), timeout=300,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return read_results(out.read_text())


def read_results(text: str) -> List[Dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


SUITES = {"bookworm": "3.11", "bullseye": "3.9"}


class Run:
    """What one suite's root did: its log, timings and outputs (or the error)."""

    def __init__(self) -> None:
        self.log: List[str] = []
        self.timings: Dict[str, float] = {}
        self.version = self.machine = ""
        self.devices: Dict[str, Any] = {}
        self.results: List[Dict[str, object]] = []
        self.error: Optional[BaseException] = None


def run_suite(suite: str, deb: Path, workdir: Path, demo_lock: threading.Lock) -> Run:
    """Build (or take from the cache) the suite's root, install the package
    offline, run the demo in it. Roots are built and installed side by side
    (mostly one emulated dpkg each); the demos take turns, so that neither
    runs short of CPU and drops frames for capacity."""
    run = Run()
    try:
        root = foreign.Root(suite, "arm64", deb)
        root.build(run.log)
        with root.session(workdir) as tree:
            assert foreign.chroot(tree, ["uname", "-m"]).strip() == "aarch64"
            (tree / "tmp" / "vidpipe.deb").write_bytes(deb.read_bytes())
            started = time.monotonic()
            # offline, as on a box without a network: only the root's apt cache
            # Depends only: emulated, each package costs about a second, and the
            # Recommends (VA/VDPAU drivers, mesa... 86 more) prove nothing about
            # vidpipe here; apt's resolver checks them per box in
            # test_dependencies.py, and the amd64 VM image has them as a user's apt would
            foreign.chroot(tree, ["apt-get", "install", "-y", "-q", "--no-install-recommends",
                                  "-o", "Dpkg::Options::=--force-unsafe-io",
                                  "/tmp/vidpipe.deb"], timeout=1800, offline=True)
            run.timings["apt install"] = time.monotonic() - started
            run.version = foreign.chroot(tree, ["dpkg-query", "-W", "-f",
                                                "${Status} ${Version}", "vidpipe"])
            run.machine = foreign.chroot(tree, ["python3", "-c", "import platform, sys; print("
                                                "platform.machine(), '%d.%d' % "
                                                "sys.version_info[:2])"])
            run.devices = json.loads(foreign.chroot(tree, ["vidpipe", "devices", "--json"]))
            foreign.chroot(tree, ["vidpipe", "check-config", "/etc/vidpipe/pipeline.toml"])
            with demo_lock:
                started = time.monotonic()
                foreign.chroot(tree, ["vidpipe"] + DEMO + ["--jsonl", "/tmp/results.jsonl"],
                               timeout=600)
                run.timings["300 frames"] = time.monotonic() - started
            run.results = read_results((tree / "tmp" / "results.jsonl").read_text())
    except BaseException as exc:  # reported by the suite's own test
        run.error = exc
    return run


@pytest.fixture(scope="module")
def runs(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Run]:
    need_root("the arm64 test builds a root with debootstrap and mounts it")
    lock = threading.Lock()
    with concurrent.futures.ThreadPoolExecutor(len(SUITES)) as pool:
        futures = {suite: pool.submit(run_suite, suite, deb,
                                      tmp_path_factory.mktemp("arm64-" + suite), lock)
                   for suite in SUITES}
        return {suite: future.result() for suite, future in futures.items()}


@pytest.mark.parametrize("suite", sorted(SUITES, reverse=True))
def test_install_and_run_on_arm64(runs: Dict[str, Run],
                                  reference: List[Dict[str, object]], suite: str) -> None:
    run = runs[suite]
    print("\n".join(run.log))
    if run.error is not None:
        raise run.error
    assert run.version.startswith("install ok installed"), run.version
    assert run.machine.split() == ["aarch64", SUITES[suite]]
    software = run.devices["software"]
    print("{} arm64: {}; Python {python}, NumPy {numpy}, pyzmq {pyzmq}, TOML via {toml}, "
          "OpenCV {version}".format(suite, ", ".join("{} {:.0f} s".format(k, v)
                                                    for k, v in run.timings.items()),
                                   version=software["opencv"]["version"], **software))
    results = run.results
    seqs = [r["seq"] for r in results]
    assert seqs == list(range(FRAMES)), "frames missing or out of order: {}".format(
        [r for r in results if r["status"] != "ok"][:5])
    assert all(r["status"] == "ok" for r in results)
    assert {r["meta"]["handler"] for r in results} == {"1", "2"}  # both handlers worked
    # the same pixels out as on amd64: Debian's arm64 NumPy/OpenCV builds agree
    assert [r["sha1"] for r in results] == [r["sha1"] for r in reference]
