"""A Debian root of another architecture (arm64), run through qemu-user.

``debootstrap --arch=arm64`` builds a minimal Debian root; the kernel's
binfmt_misc hands its binaries to ``qemu-aarch64`` (Debian's
qemu-user-static, registered with the ``F`` flag so it works inside a
chroot). What ``vidpipe.deb`` depends on is downloaded into the root's apt
cache at build time, so each run's ``apt-get install ./vidpipe.deb`` resolves
and installs offline, as on a box without a network. The root is cached under
``~/.cache/vidpipe/roots/`` keyed by everything that goes into it; each run
works on an overlay of it (the cache itself is never changed) with fresh
``/proc``, ``/dev``, ``/dev/shm``, ``/run`` and ``/tmp``.

What this proves and what it does not: the package installs with apt on that
release and architecture, its Python code runs there on that release's
Python, NumPy, pyzmq and OpenCV builds (aarch64 wheels-free, Debian's own),
and the pipeline's processes, ZeroMQ sockets and shared memory work on it.
The kernel is the host's (x86_64) and there is no systemd or udev in a chroot:
those stay proven by the amd64 VM test.
"""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

from system.vm import (HOST_PATH, VMError, cached_build, guest_dependencies, host_mirror,
                       sh)

CACHE = Path(os.environ.get("VIDPIPE_ROOT_CACHE", "~/.cache/vidpipe/roots")).expanduser()
RECIPE_VERSION = "2"  # bump to force a rebuild of cached roots
BINFMT = Path("/proc/sys/fs/binfmt_misc")
QEMU = {"arm64": "qemu-aarch64"}


_BINFMT_LOCK = threading.Lock()


def ensure_binfmt(arch: str) -> None:
    """binfmt_misc mounted and qemu-user registered for ``arch`` (as root;
    roots are built side by side: one thread at a time in here)."""
    with _BINFMT_LOCK:
        _ensure_binfmt(arch)


def _ensure_binfmt(arch: str) -> None:
    entry = BINFMT / QEMU[arch]
    if not (BINFMT / "status").exists():
        sh(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
    if not entry.exists():
        # binfmt-support's database (qemu-user-static's postinst filled it)
        sh(["update-binfmts", "--import", QEMU[arch]])
        sh(["update-binfmts", "--enable", QEMU[arch]])
    text = entry.read_text() if entry.exists() else ""
    if "enabled" not in text.splitlines()[:1] or "F" not in _flags(text):
        raise VMError("{} is not registered with binfmt_misc as enabled with the F flag "
                      "(install qemu-user-static and binfmt-support):\n{}"
                      .format(QEMU[arch], text))


def _flags(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("flags:"):
            return line.split(":", 1)[1].strip()
    return ""


class Root:
    """A cached Debian root of ``suite`` for ``arch`` with what ``deb`` needs
    downloaded (not installed) into its apt cache."""

    def __init__(self, suite: str, arch: str, deb: Path) -> None:
        self.suite, self.arch, self.deb = suite, arch, deb
        self.packages = guest_dependencies(deb)  # the cache key: Depends + Recommends
        key = json.dumps([RECIPE_VERSION, suite, arch, self.packages])
        self.dir = CACHE / "{}-{}-{}".format(suite, arch,
                                             hashlib.sha256(key.encode()).hexdigest()[:12])
        self.tree = self.dir / "root"

    def build(self, log: List[str]) -> None:
        ensure_binfmt(self.arch)
        cached_build(self.dir, "root", log, self._make)

    def _make(self, work: Path) -> Tuple[Path, Dict[str, object]]:
        root = work / "root"
        sh(["debootstrap", "--arch=" + self.arch, "--variant=minbase",
            "--include=python3", self.suite, str(root), host_mirror()], timeout=3600)
        with mounted(root):
            chroot(root, ["apt-get", "update", "-qq"])
            # resolved by apt from the package itself (on bullseye it picks
            # python3-toml, on bookworm python3 >= 3.11 needs nothing)
            shutil.copy(str(self.deb), str(root / "root" / "vidpipe.deb"))
            chroot(root, ["apt-get", "install", "-y", "-qq", "--download-only",
                          "/root/vidpipe.deb"], timeout=1800)
            (root / "root" / "vidpipe.deb").unlink()
            for cached in (root / "var/cache/apt/archives").glob("vidpipe_*.deb"):
                cached.unlink()  # each run installs the package under test
        return work, {"packages": self.packages}

    @contextlib.contextmanager
    def session(self, workdir: Path) -> Iterator[Path]:
        """The root as an overlay (changes go to ``workdir``), mounted for use."""
        upper, scratch, merged = workdir / "upper", workdir / "work", workdir / "merged"
        for path in (upper, scratch, merged):
            path.mkdir(parents=True, exist_ok=True)
        sh(["mount", "-t", "overlay", "overlay", "-o", "lowerdir={},upperdir={},workdir={}"
            .format(self.tree, upper, scratch), str(merged)])
        try:
            with mounted(merged):
                yield merged
        finally:
            _umount(merged)


@contextlib.contextmanager
def mounted(root: Path) -> Iterator[None]:
    """/proc, /dev (the host's), and private /dev/shm, /run, /tmp in ``root``."""
    done: List[Path] = []
    try:
        for target, cmd in (("proc", ["-t", "proc", "proc"]),
                            ("dev", ["--bind", "/dev"]),
                            ("dev/shm", ["-t", "tmpfs", "-o", "mode=1777", "shm"]),
                            ("dev/pts", ["-t", "devpts", "-o", "newinstance", "devpts"]),
                            ("run", ["-t", "tmpfs", "-o", "mode=755", "run"]),
                            ("tmp", ["-t", "tmpfs", "-o", "mode=1777", "tmp"])):
            path = root / target
            path.mkdir(parents=True, exist_ok=True)
            sh(["mount"] + cmd + [str(path)])
            done.append(path)
        yield
    finally:
        for path in reversed(done):
            _umount(path)


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env=dict(os.environ, PATH=HOST_PATH))


def chroot(root: Path, cmd: List[str], timeout: float = 900, offline: bool = False) -> str:
    """Run ``cmd`` inside ``root`` (Debian's PATH, no locale from the host);
    ``offline``: in a network namespace of its own with no interfaces up."""
    isolate = ["unshare", "--net"] if offline else []
    return sh(isolate + ["chroot", str(root), "/usr/bin/env", "-i", "PATH=" + HOST_PATH,
                         "HOME=/root", "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"]
              + cmd, timeout=timeout)
