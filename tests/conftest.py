"""Shared fixtures: real role processes, a real sd_notify socket, short temp paths."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))

from vidpipe.tools.tomlwrite import dump_toml  # noqa: E402


@pytest.fixture(scope="session")
def deb() -> Path:
    """``vidpipe.deb`` built once per run from this tree (``make deb``: Debian's
    own tools, whatever Python runs pytest); the versioned file in build/deb."""
    result = subprocess.run(["make", "deb"], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, timeout=600,
                            env=dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin"))
    assert result.returncode == 0, result.stdout[-3000:]
    debs = sorted((ROOT / "build" / "deb").glob("vidpipe_*_all.deb"))
    assert debs and (ROOT / "vidpipe.deb").exists(), result.stdout[-3000:]
    return debs[-1]


def child_env(**extra: str) -> Dict[str, str]:
    env = os.environ.copy()
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("NOTIFY_SOCKET", None)
    env.update(extra)
    return env


class NotifySocket:
    """A real AF_UNIX datagram socket standing in for systemd's notify socket.

    A thread reads it all the time, as systemd does; with ``reading=False``
    nobody does (a busy systemd: the kernel queue fills up) until the test
    calls :meth:`received`."""

    def __init__(self, path: str, reading: bool = True) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.log: List[Dict[str, str]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread: Optional[threading.Thread] = None
        if reading:
            self._thread = threading.Thread(target=self._reader, daemon=True)
            self._thread.start()

    def received(self, wait: float = 0.05) -> List[str]:
        """The datagrams queued now, as sent (without a reader thread)."""
        out = []
        self.sock.settimeout(wait)
        try:
            while True:
                out.append(self.sock.recv(4096).decode())
        except socket.timeout:
            return out

    def _reader(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = {}
            for line in data.decode("latin-1").splitlines():
                key, _, value = line.partition("=")
                fields[key] = value
            fields["_t"] = str(time.monotonic())
            with self._lock:
                self.log.append(fields)

    def _read(self, timeout: float) -> bool:
        time.sleep(timeout)
        return True

    def drain(self) -> List[Dict[str, str]]:
        with self._lock:
            return list(self.log)

    def wait_for(self, key: str, timeout: float = 15.0, start: int = 0,
                 predicate: Any = None) -> Dict[str, str]:
        deadline = time.monotonic() + timeout
        index = start
        while True:
            log = self.drain()
            while index < len(log):
                msg = log[index]
                index += 1
                if key in msg and (predicate is None or predicate(msg[key])):
                    return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("no {} notification within {}s; got {}".format(
                    key, timeout, self.drain()[-5:]))
            self._read(min(remaining, 0.2))

    def last(self, key: str) -> Optional[str]:
        for msg in reversed(self.drain()):
            if key in msg:
                return msg[key]
        return None

    def close(self) -> None:
        self._closed = True
        if self._thread is not None:
            self._thread.join(1)
        self.sock.close()


class Role:
    """One ``vidpipe run ROLE NAME`` process."""

    started = 0

    def __init__(self, root: Path, config: Path, role: str, name: str,
                 env: Optional[Dict[str, str]] = None,
                 prefix: Optional[List[str]] = None) -> None:
        self.role, self.name = role, name
        Role.started += 1  # a restarted role gets its own socket and log
        tag = "{}-{}-{}".format(role, name, Role.started)
        self.notify = NotifySocket(str(root / "n-{}.sock".format(tag)))
        self.log_path = root / "{}.log".format(tag)
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            list(prefix or []) +  # e.g. ip netns exec NS
            [sys.executable, "-m", "vidpipe", "--config", str(config), "run", role, name],
            env=child_env(NOTIFY_SOCKET=self.notify.path, **(env or {})),
            stdout=self.log_file, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ready(self, timeout: float = 20.0) -> Dict[str, str]:
        """READY=1; for a handler, also the end of its preparation (it builds
        and warms its stages after READY, then joins the decoders)."""
        msg = self.notify.wait_for("READY", timeout)
        if self.role == "handler":
            msg = self.notify.wait_for("STATUS", timeout + 10, predicate=lambda text:
                                       "preparing stages" not in text)
        return msg

    def output(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def close(self) -> None:
        self.stop(signal.SIGKILL if self.proc.poll() is None else signal.SIGTERM, 2)
        self.log_file.close()
        self.notify.close()


class Pipeline:
    """A private runtime directory, a config and the role processes of one test."""

    def __init__(self) -> None:
        # short: ipc socket paths must fit in 107 bytes
        self.root = Path(tempfile.mkdtemp(prefix="vp-", dir="/tmp"))
        self.runtime = self.root / "run"
        self.config_path = self.root / "pipeline.toml"
        self.results_path = self.root / "results.jsonl"
        self.roles: List[Role] = []

    def write_config(self, data: Dict[str, Any]) -> Path:
        data = json.loads(json.dumps(data))  # deep copy
        data.setdefault("pipeline", {}).setdefault("runtime_dir", str(self.runtime))
        data["pipeline"].setdefault("stats_interval_s", float(os.environ.get("VP_TEST_STATS", "0")))
        collector = data.setdefault("collector", {})
        collector.setdefault("outputs", ["jsonl"])
        if "jsonl" in collector["outputs"] and "jsonl_path" not in collector:  # (the old name)
            jsonl = collector.setdefault("jsonl", {})
            jsonl.setdefault("path", str(self.results_path))
            jsonl.setdefault("checksum", True)
        self.config_path.write_text(dump_toml(data))
        return self.config_path

    def start(self, role: str, name: str, ready: bool = True,
              env: Optional[Dict[str, str]] = None,
              prefix: Optional[List[str]] = None) -> Role:
        proc = Role(self.root, self.config_path, role, name, env, prefix)
        self.roles.append(proc)
        if ready:
            try:
                proc.ready()
            except AssertionError:
                raise AssertionError("{} {} not ready; its output:\n{}".format(
                    role, name, proc.output())) from None
        return proc

    def results(self) -> List[Dict[str, Any]]:
        if not self.results_path.exists():
            return []
        text = self.results_path.read_text()
        # the collector may be writing the last line right now: complete lines only
        text = text[:text.rfind("\n") + 1]
        return [json.loads(line) for line in text.splitlines()]

    def logs(self) -> str:
        return "\n".join("==== {} {} (rc={})\n{}".format(r.role, r.name, r.proc.poll(),
                                                      r.output()[-4000:])
                         for r in self.roles)

    def close(self) -> None:
        for role in reversed(self.roles):
            role.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def pipeline(request: Any) -> Any:
    pipe = Pipeline()
    yield pipe
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        print(pipe.logs())
    pipe.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


# where a run's time went: the slow parts CI's budget is planned around by
# name, the rest by folder (setup and teardown included: fixtures such as the
# VM image or the .deb are paid there)
TIME_PARTS = (("tests/system/test_vm.py", "VM system test"),
              ("tests/system/test_arm64.py", "arm64 roots"),
              ("tests/bench/", "benchmarks"))


def time_part(nodeid: str) -> str:
    for prefix, part in TIME_PARTS:
        if nodeid.startswith(prefix):
            return part
    folder = nodeid.split("/")
    return "tests/" + folder[1] if len(folder) > 2 else "other"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    spent: Dict[str, float] = {}
    counted: Dict[str, int] = {}
    for reports in terminalreporter.stats.values():
        for rep in reports:
            nodeid, duration = getattr(rep, "nodeid", None), getattr(rep, "duration", None)
            if not nodeid or duration is None:
                continue
            part = time_part(nodeid)
            spent[part] = spent.get(part, 0.0) + duration
            if getattr(rep, "when", None) == "call":
                counted[part] = counted.get(part, 0) + 1
    if not spent:
        return
    terminalreporter.write_sep("-", "where the time went, by part")
    for part, seconds in sorted(spent.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line("{:>8.1f} s  {:<24} {} tests".format(
            seconds, part, counted.get(part, 0)))


@pytest.fixture
def closing() -> Any:
    """``closing(thing)`` returns ``thing`` and closes it (``thing.close()``)
    at teardown, the last made first: for in-process rigs a test makes
    through a factory fixture."""
    made: List[Any] = []

    def keep(thing: Any) -> Any:
        made.append(thing)
        return thing

    yield keep
    for thing in reversed(made):
        thing.close()


@pytest.fixture
def zmq_ctx() -> Any:
    """A ZeroMQ context of the test's own (as pyzmq's own tests have), for the
    sockets a test opens itself: destroyed at teardown, whatever the test left
    open (a test may destroy it earlier to drop its connections)."""
    import zmq

    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


@pytest.fixture
def short_tmp() -> Any:
    path = Path(tempfile.mkdtemp(prefix="vp-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def small_disk(short_tmp: Path) -> Any:
    """An 8 MiB tmpfs: a disk that fills up (root mounts it; CI is root)."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root; this test mounts a tmpfs")
        pytest.skip("mounting a small tmpfs needs root")
    mount = short_tmp / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def run_cli(*args: str, env: Optional[Dict[str, str]] = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``vidpipe ARGS``; on timeout kill its whole process group and say what it printed."""
    cmd = [sys.executable, "-m", "vidpipe"] + list(args)
    proc = subprocess.Popen(cmd, env=child_env(**(env or {})), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError("vidpipe {} did not finish in {}s:\n{}\n{}".format(
            " ".join(args), timeout, out[-3000:], err[-5000:])) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def write_clip(path: Path, frames: int, width: int, height: int, fps: float = 25) -> Path:
    """A Motion-JPEG AVI of test-pattern frames 0 .. frames-1 (needs no extra codec)."""
    import cv2

    from vidpipe.capture.sources import render_testsrc

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for i in range(frames):
        writer.write(render_testsrc(i, width, height))
    writer.release()
    return path


def fake_jetson(root: Path, dlas: int = 2) -> Path:
    """A Jetson as vidpipe sees it: device-tree files and /dev nodes laid out as
    JetPack 5 has them on an AGX Xavier (the nodes are plain files: detection
    only looks for them)."""
    (root / "proc/device-tree").mkdir(parents=True)
    (root / "proc/device-tree/model").write_bytes(b"NVIDIA Jetson AGX Xavier Developer Kit\0")
    (root / "proc/device-tree/compatible").write_bytes(b"nvidia,p2972-0000\0nvidia,tegra194\0")
    (root / "sys/devices/system/cpu").mkdir(parents=True)
    (root / "sys/devices/system/cpu/online").write_text("0-7\n")
    (root / "dev").mkdir()
    nodes = ["nvmap", "nvhost-ctrl", "nvhost-ctrl-gpu", "nvhost-gpu", "nvhost-as-gpu"]
    for n in range(dlas):
        nodes += ["nvhost-nvdla{}".format(n), "nvhost-ctrl-nvdla{}".format(n)]
    for node in nodes:
        (root / "dev" / node).write_text("")
    (root / "etc").mkdir()
    (root / "etc/group").write_text("root:x:0:\nvideo:x:44:\nrender:x:105:\n")
    return root


def free_port() -> int:
    """A TCP port nobody listens on right now (for the collector's HTTP server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> bytes:
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after {}s waiting for {}".format(timeout, what))
        time.sleep(interval)


def need_module(name: str) -> Any:
    """Import ``name``; outside CI a missing optional module skips the test
    module, in CI (where ./dev test installs it) it is an error."""
    if os.environ.get("CI"):
        import importlib

        return importlib.import_module(name)
    return pytest.importorskip(name)


def hostile_peers(ctx: Any, runtime: Path, camera: str) -> Any:
    """What an attacker on the box opens: a PUSH to the collector's results
    socket and a DEALER to decoder ``camera``'s frame socket (as a handler)."""
    import zmq

    collector = ctx.socket(zmq.PUSH)
    collector.connect("ipc://{}/collector.sock".format(runtime))
    decoder = ctx.socket(zmq.DEALER)
    decoder.connect("ipc://{}/decoder-{}.sock".format(runtime, camera))
    return collector, decoder


def fake_decoder(ctx: Any, runtime: Path, name: str, handlers: int,
                 timeout: float = 10) -> Any:
    """A ROUTER bound as ``decoder-NAME.sock`` in the runtime directory, which
    running handlers discover and connect to; returns it and the identities of
    the ``handlers`` that announced themselves (fails if fewer did)."""
    import zmq

    sock = ctx.socket(zmq.ROUTER)
    sock.bind("ipc://{}/decoder-{}.sock".format(runtime, name))
    peers: List[bytes] = []
    deadline = time.monotonic() + timeout
    while len(peers) < handlers and time.monotonic() < deadline:
        if sock.poll(200):
            identity = sock.recv_multipart()[0]
            if identity not in peers:
                peers.append(identity)
    assert len(peers) == handlers, "{} of {} handlers discovered decoder-{}.sock".format(
        len(peers), handlers, name)
    return sock, peers
