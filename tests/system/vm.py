"""A Debian 12 VM (QEMU, software emulation) for the system test.

Follows ../shared/vm-recipe.md: debootstrap a minimal bookworm with systemd,
udev, kmod, v4l-utils and Debian's kernel, install what ``vidpipe.deb``
depends on (Depends and Recommends, as a user's apt chooses them) and the
scenario's tools, and make an ext4 image of it. The image is cached under
``~/.cache/vidpipe/vm/`` keyed by a hash of everything that goes into it. Each
run boots a copy-on-write overlay of it with a second disk carrying the
packages and the scenario in, and the results out.

Why the dependencies are installed here and not by the guest's apt: under
software emulation dpkg takes about 12 minutes for OpenCV's ~400 packages,
natively about one. What that would prove is proven elsewhere: apt's resolver
on the .deb per release (tests/integration/test_dependencies.py), and an
offline ``apt-get install ./vidpipe.deb`` that pulls its dependencies on a bare
root (tests/system/test_arm64.py). In the guest, apt still installs the
package itself, offline, with its maintainer scripts under the real systemd
and udev, which is what the VM is for.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

HERE = Path(__file__).resolve().parent
GUEST = HERE / "guest"
CACHE = Path(os.environ.get("VIDPIPE_VM_CACHE", "~/.cache/vidpipe/vm")).expanduser()
SUITE = "bookworm"
BASE_PACKAGES = ["systemd", "systemd-sysv", "udev", "kmod", "v4l-utils", "iproute2",
                 "ca-certificates", "procps", "psmisc", "apt", "python3"]
#: what the scenario uses beside vidpipe (installed in the image; mosquitto is
#: disabled there: the scenario starts it when "a broker arrives")
GUEST_TOOLS = ["mosquitto", "mosquitto-clients",
               # an RTSP camera in the guest (tests/rtsp_camera.py)
               "python3-gi", "gir1.2-gst-rtsp-server-1.0", "gstreamer1.0-plugins-good",
               "gstreamer1.0-plugins-ugly",
               # passthrough recording's parser (h264parse)
               "gstreamer1.0-plugins-bad"]
RECIPE_VERSION = "5"  # bump to force a rebuild of cached images
HOST_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class VMError(Exception):
    pass


def sh(cmd: List[str], timeout: float = 1800, **kw: object) -> str:
    """Run a host command; raise VMError with its output when it fails."""
    env = dict(os.environ, PATH=HOST_PATH, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8")
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=timeout, env=env,
                            **kw)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise VMError("{} failed ({}):\n{}".format(" ".join(cmd), result.returncode,
                                                  result.stdout[-4000:]))
    return result.stdout


def host_mirror() -> str:
    """The Debian mirror this machine's apt uses (so the guest uses the same one)."""
    texts = []
    for path in [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d")
                                                         .glob("*")):
        if path.is_file() and (path.suffix in (".list", ".sources") or path.name ==
                               "sources.list"):
            texts.append(path.read_text(errors="replace"))
    text = "\n".join(texts)
    for uri in re.findall(r"^URIs:\s*(\S+)", text, re.M) + \
            re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+" + SUITE + r"\s", text, re.M):
        if uri.rstrip("/").endswith("/debian"):
            return uri
    raise VMError("no Debian mirror for {} found in this machine's apt sources".format(SUITE))


#: alternatives in Depends that only other distributions carry (NVIDIA's OpenCV)
NOT_IN_DEBIAN = {"libopencv-python"}


def guest_dependencies(deb: Path) -> List[str]:
    """The first alternative Debian has of each of the package's Depends and
    Recommends (what apt on the guest will choose)."""
    fields = sh(["dpkg-deb", "-f", str(deb), "Depends", "Recommends"])
    names = []
    for line in fields.splitlines():
        _, _, value = line.partition(":")
        for item in value.split(","):
            choices = [alt.strip().split(" ")[0].split(":")[0] for alt in item.split("|")]
            name = next((c for c in choices if c not in NOT_IN_DEBIAN), "")
            if name and name not in names:
                names.append(name)
    return sorted(names)


def cached_build(final: Path, what: str, log: List[str],
                 make: Callable[[Path], Tuple[Path, Dict[str, object]]]) -> None:
    """``final`` as ``make`` builds it, once: ``make(work)`` builds in a scratch
    directory under the cache and returns the directory to keep and what to
    record of it; that directory becomes ``final`` with a ``complete`` marker
    (a build cut short leaves no half-made cache behind)."""
    if (final / "complete").exists():
        log.append("{}: cached {}".format(what, final))
        return
    started = time.monotonic()
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=str(final.parent)))
    try:
        keep, record = make(work)
        if final.exists():
            shutil.rmtree(str(final))
        keep.rename(final)
        (final / "complete").write_text(json.dumps(record))
        log.append("{}: built in {:.0f} s".format(what, time.monotonic() - started))
    finally:
        shutil.rmtree(str(work), ignore_errors=True)


class Image:
    """The cached base image: ext4 root file system, kernel and initrd."""

    def __init__(self, packages: List[str]) -> None:
        self.packages = packages
        key = json.dumps([RECIPE_VERSION, SUITE, BASE_PACKAGES, packages,
                          (GUEST / "vidpipe-systest.service").read_text()])
        self.dir = CACHE / hashlib.sha256(key.encode()).hexdigest()[:16]
        self.disk = self.dir / "base.img"
        self.kernel = self.dir / "vmlinuz"
        self.initrd = self.dir / "initrd.img"

    def build(self, log: List[str]) -> None:
        cached_build(self.dir, "image", log, self._make)

    def _make(self, work: Path) -> Tuple[Path, Dict[str, object]]:
        root = work / "root"
        mirror = host_mirror()
        sh(["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
            SUITE, str(root), mirror], timeout=1800)
        chroot = ["chroot", str(root)]
        sh(chroot + ["apt-get", "update", "-qq"])
        sh(chroot + ["apt-get", "install", "-y", "-qq", "--no-install-recommends",
                     "linux-image-amd64"])
        # vidpipe's dependencies with their Recommends (as a user's apt would
        # install them) and the scenario's tools, at native speed (see above);
        # no daemon may start in the chroot
        policy = root / "usr" / "sbin" / "policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        try:
            sh(chroot + ["apt-get", "install", "-y", "-qq"] + self.packages, timeout=3600)
        finally:
            policy.unlink()
        sh(chroot + ["systemctl", "disable", "mosquitto.service"])
        sh(chroot + ["apt-get", "clean"])
        self._configure(root)
        kernels = sorted((root / "boot").glob("vmlinuz-*"))
        initrds = sorted((root / "boot").glob("initrd.img-*"))
        if not kernels or not initrds:
            raise VMError("no kernel or initrd in the guest's /boot")
        stage = work / "image"
        stage.mkdir()
        shutil.copy(str(kernels[-1]), str(stage / "vmlinuz"))
        shutil.copy(str(initrds[-1]), str(stage / "initrd.img"))
        sh(["truncate", "-s", "6G", str(stage / "base.img")])
        sh(["mkfs.ext4", "-q", "-F", "-L", "vidpipe-root", "-d", str(root),
            str(stage / "base.img")], timeout=600)
        return stage, {"packages": self.packages, "mirror": mirror}

    @staticmethod
    def _configure(root: Path) -> None:
        (root / "etc" / "fstab").write_text("/dev/vda / ext4 defaults 0 1\n")
        (root / "etc" / "hostname").write_text("vidpipe-vm\n")
        (root / "mnt" / "io").mkdir(parents=True, exist_ok=True)
        system = root / "etc" / "systemd" / "system"
        shutil.copy(str(GUEST / "vidpipe-systest.service"), str(system))
        wants = system / "multi-user.target.wants"
        wants.mkdir(parents=True, exist_ok=True)
        link = wants / "vidpipe-systest.service"
        if not link.exists():
            link.symlink_to("/etc/systemd/system/vidpipe-systest.service")
        for unit in ("serial-getty@ttyS0.service", "getty@tty1.service",
                     "apt-daily.timer", "apt-daily-upgrade.timer"):
            masked = system / unit
            if not masked.exists():
                masked.symlink_to("/dev/null")
        # keep the journal of this boot in memory, and the console quiet
        conf = root / "etc" / "systemd" / "journald.conf.d"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / "vidpipe.conf").write_text("[Journal]\nStorage=volatile\n")


def make_upgrade(deb: Path, out: Path) -> None:
    """The same package with a higher version: an upgrade for the scenario."""
    work = Path(tempfile.mkdtemp(prefix="vidpipe-upgrade-"))
    try:
        sh(["dpkg-deb", "-R", str(deb), str(work / "pkg")])
        control = work / "pkg" / "DEBIAN" / "control"
        text = control.read_text()
        text = re.sub(r"^Version: (.*)$", r"Version: \1+systest1", text, flags=re.M)
        control.write_text(text)
        sh(["dpkg-deb", "-Zxz", "-b", str(work / "pkg"), str(out)])
    finally:
        shutil.rmtree(str(work), ignore_errors=True)


def debugfs_read(image: Path, name: str) -> Optional[str]:
    out = Path(tempfile.mkdtemp(prefix="vidpipe-io-")) / name
    try:
        subprocess.run(["debugfs", "-R", "dump /{} {}".format(name, out), str(image)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=dict(os.environ, PATH=HOST_PATH), timeout=60)
        return out.read_text(errors="replace") if out.exists() else None
    finally:
        shutil.rmtree(str(out.parent), ignore_errors=True)


def run_scenario(deb: Path, workdir: Path, timeout: float = 1800) -> Dict[str, object]:
    """Boot the VM on the scenario; returns steps, result, journal and timings."""
    log: List[str] = []
    image = Image(guest_dependencies(deb) + GUEST_TOOLS)
    image.build(log)
    io = workdir / "io"
    io.mkdir(parents=True, exist_ok=True)
    shutil.copy(str(deb), str(io / "vidpipe.deb"))
    make_upgrade(deb, io / "vidpipe-upgrade.deb")
    shutil.copy(str(GUEST / "scenario.sh"), str(io / "scenario.sh"))
    shutil.copy(str(GUEST.parent.parent / "rtsp_camera.py"), str(io / "rtsp_camera.py"))
    io_img = workdir / "io.img"
    sh(["truncate", "-s", "1G", str(io_img)])
    sh(["mkfs.ext4", "-q", "-F", "-d", str(io), str(io_img)])
    overlay = workdir / "overlay.qcow2"
    sh(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image.disk), "-F", "raw",
        str(overlay)])
    console = workdir / "console.log"
    cmd = ["timeout", str(int(timeout)), "qemu-system-x86_64", "-accel", "tcg,thread=multi",
           "-cpu", "max", "-m", "3072", "-smp", "2",
           "-kernel", str(image.kernel), "-initrd", str(image.initrd),
           "-append", "console=ttyS0 root=/dev/vda rw panic=-1 quiet systemd.show_status=0",
           "-drive", "file={},format=qcow2,if=virtio".format(overlay),
           "-drive", "file={},format=raw,if=virtio".format(io_img),
           "-nographic", "-no-reboot", "-nic", "none"]
    started = time.monotonic()
    with open(str(console), "wb") as handle:
        proc = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, env=dict(os.environ, PATH=HOST_PATH))
    log.append("vm: ran {:.0f} s, qemu exit {}".format(time.monotonic() - started,
                                                      proc.returncode))
    steps_text = debugfs_read(io_img, "steps.jsonl") or ""
    result_text = debugfs_read(io_img, "result.json")
    return {
        "log": log,
        "qemu_exit": proc.returncode,
        "steps": [json.loads(line) for line in steps_text.splitlines() if line.strip()],
        "result": json.loads(result_text) if result_text else None,
        "journal": debugfs_read(io_img, "journal.txt") or "",
        "status": debugfs_read(io_img, "status.txt") or "",
        "console": console.read_text(errors="replace"),
    }
