"""Does ``apt install ./vidpipe.deb`` resolve on every box users own?

apt's own resolver (``apt-get -s install ./vidpipe.deb``), each target in a
scratch apt state of its own:

* Debian 11 and 12, amd64 and arm64: Debian's real package indexes, from the
  mirror this machine's apt uses;
* Ubuntu 20.04 and 22.04, and JetPack 5 and 6 (those plus NVIDIA's
  repository, NVIDIA's OpenCV installed or not): stub indexes built from the
  versions those releases publish (``STUBS`` names the source of each). This
  machine reaches Debian's archive only, so the stubs stand in for Ubuntu's
  and NVIDIA's; they carry the structure that matters (OpenCV's 18 library
  packages behind ``python3-opencv``, which TOML parser the release has).

The figures (what is pulled for TOML and OpenCV) are printed for docs/getting-started.md (Supported boxes).
"""

import gzip
import os
import re
import subprocess
from pathlib import Path
from typing import List, Optional

import pytest

# apt resolves the .deb against each release's package lists whatever Python
# runs pytest: the floor suites would repeat exactly the same checks
pytestmark = pytest.mark.once

# what python3-opencv pulls on Debian 11 and Ubuntu 20.04/22.04: its own
# library packages (names as on Ubuntu 20.04, 4.2; the count is what matters)
OPENCV_LIBS = ["libopencv-{}4.2".format(m) for m in (
    "calib3d", "contrib", "core", "dnn", "features2d", "flann", "highgui", "imgcodecs",
    "imgproc", "ml", "objdetect", "photo", "shape", "stitching", "superres", "video",
    "videoio", "viz")]

# name: (python3 version, {package: version}), from packages.ubuntu.com
# (focal / jammy, -updates where newer) and NVIDIA's JetPack 5.1.2 / 6.0 apt
# repository (repo.download.nvidia.com/jetson: libopencv-python)
UBUNTU = {
    "focal": ("3.8.2-0ubuntu2", {
        "python3-zmq": "18.1.1-3", "python3-numpy": "1:1.17.4-5ubuntu3",
        "python3-opencv": "4.2.0+dfsg-5", "python3-pyudev": "0.21.0-2",
        "python3-toml": "0.10.0-3", "python3-sdnotify": "0.3.1-2",
        "python3-h5py": "2.10.0-2", "opencv-data": "4.2.0+dfsg-5",
        "v4l-utils": "1.18.0-2build1", "systemd": "245.4-4ubuntu3",
        "udev": "245.4-4ubuntu3"}),
    "jammy": ("3.10.6-1~22.04", {
        "python3-zmq": "22.3.0-1build1", "python3-numpy": "1:1.21.5-1ubuntu22.04.1",
        "python3-opencv": "4.5.4+dfsg-9ubuntu4", "python3-pyudev": "0.22.0-2",
        "python3-tomli": "1.2.2-2", "python3-toml": "0.10.2-1",
        "python3-sdnotify": "0.3.1-2", "python3-h5py": "3.6.0-2build1",
        "opencv-data": "4.5.4+dfsg-9ubuntu4", "v4l-utils": "1.22.1-2build1",
        "systemd": "249.11-0ubuntu3", "udev": "249.11-0ubuntu3"}),
}
NVIDIA_OPENCV = {"jetpack5": ("focal", "4.5.4-8-g3e4c170df4"),
                 "jetpack6": ("jammy", "4.8.0-1-g6371ee1")}


def run(cmd: List[str], **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=600, **kw)  # type: ignore


class Apt:
    """A scratch apt: its own sources, lists, cache and dpkg status."""

    def __init__(self, root: Path, arch: str, sources: str, installed: str = "") -> None:
        self.root = root
        for sub in ("etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d",
                    "state/lists/partial", "cache/archives/partial"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "etc/apt/sources.list").write_text(sources)
        (root / "status").write_text(installed)
        self.options = ["-o", "Dir::Etc={}/etc/apt".format(root),
                        "-o", "Dir::State={}/state".format(root),
                        "-o", "Dir::Cache={}/cache".format(root),
                        "-o", "Dir::State::status={}/status".format(root),
                        "-o", "APT::Architecture=" + arch, "-o", "APT::Architectures=" + arch,
                        "-o", "Debug::NoLocking=1", "-o", "Acquire::Languages=none",
                        "-o", "APT::Sandbox::User=root"]

    def update(self, strict: bool = True) -> None:
        """``strict``: no ``Err:`` line at all (a flat file: repository gets one
        for every compression apt tries before the one that is there)."""
        result = run(["apt-get"] + self.options + ["update"])
        assert result.returncode == 0, result.stdout[-2000:]
        assert not strict or "Err:" not in result.stdout, result.stdout[-2000:]
        lists = list((self.root / "state/lists").glob("*Packages*"))
        assert lists, "apt read no package index:\n" + result.stdout[-2000:]

    def simulate(self, deb: Path) -> List[str]:
        """The packages ``apt install ./vidpipe.deb`` would install (fails the
        test, with apt's words, when it cannot)."""
        result = run(["apt-get"] + self.options + ["-s", "install", str(deb)],
                     env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        assert result.returncode == 0, result.stdout[-3000:]
        return re.findall(r"^Inst (\S+)", result.stdout, re.M)


def opencv(pulled: List[str]) -> List[str]:
    """OpenCV's library packages among ``pulled`` (opencv-data, the cascade
    files the faces stage reads, is a Recommends and counted apart)."""
    return [p for p in pulled if p == "python3-opencv" or p.startswith("libopencv")]


def mirror() -> str:
    from system.vm import host_mirror

    return host_mirror()


@pytest.mark.parametrize("suite,python,toml", [("bullseye", "3.9", "python3-toml"),
                                               ("bookworm", "3.11", None)])
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_debian_resolves(deb: Path, tmp_path: Path, suite: str, python: str,
                         toml: Optional[str], arch: str) -> None:
    apt = Apt(tmp_path, arch, "deb [arch={} signed-by=/usr/share/keyrings/debian-archive-"
              "keyring.gpg] {} {} main\n".format(arch, mirror(), suite))
    apt.update()
    pulled = apt.simulate(deb)
    print("\n{} {}: {} packages; TOML: {}; OpenCV libraries: {}".format(
        suite, arch, len(pulled), [p for p in pulled if "toml" in p] or "tomllib",
        len(opencv(pulled))))
    assert "vidpipe" in pulled and "python3-opencv" in pulled
    assert [p for p in pulled if p in ("python3-tomli", "python3-toml")] == \
        ([toml] if toml else [])


def stanza(name: str, version: str, arch: str, depends: str = "",
           extra: str = "") -> str:
    text = ("Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: stub <stub@example.org>\n"
            "Filename: pool/{}_{}.deb\nSize: 1\nDescription: stub of {}\n").format(
                name, version, arch, name, re.sub(r"^[0-9]+:", "", version), name)
    if depends:
        text += "Depends: {}\n".format(depends)
    return text + extra


def ubuntu_index(release: str, arch: str = "arm64") -> str:
    python, packages = UBUNTU[release]
    out = [stanza("python3", python, arch, extra="Multi-Arch: allowed\n")]
    for name, version in sorted(packages.items()):
        depends = ", ".join(OPENCV_LIBS) if name == "python3-opencv" else ""
        out.append(stanza(name, version, arch if name != "python3-toml" else "all", depends))
    out += [stanza(lib, packages["python3-opencv"], arch) for lib in OPENCV_LIBS]
    return "\n".join(out)


def stub_apt(tmp_path: Path, release: str, nvidia: Optional[str] = None,
             installed: bool = False) -> Apt:
    repo = tmp_path / "repo"
    repo.mkdir(parents=True)
    index = ubuntu_index(release)
    status = ""
    if nvidia:
        nv = [stanza("libopencv", nvidia, "arm64"),
              stanza("libopencv-python", nvidia, "arm64", "libopencv (= {})".format(nvidia))]
        index += "\n" + "\n".join(nv)
        if installed:
            status = "\n".join(s.replace("Description:", "Status: install ok installed\n"
                                                        "Description:") for s in nv)
    with gzip.open(str(repo / "Packages.gz"), "wt") as handle:
        handle.write(index)
    apt = Apt(tmp_path / "apt", "arm64", "deb [trusted=yes] file:{} ./\n".format(repo), status)
    apt.update(strict=False)
    return apt


@pytest.mark.parametrize("release,toml", [("focal", "python3-toml"),
                                          ("jammy", "python3-tomli")])
def test_ubuntu_resolves(deb: Path, tmp_path: Path, release: str, toml: str) -> None:
    pulled = stub_apt(tmp_path, release).simulate(deb)
    print("\n{} (stub): TOML {}; OpenCV libraries pulled: {}".format(
        release, toml, len(opencv(pulled))))
    assert toml in pulled and len(opencv(pulled)) == 1 + len(OPENCV_LIBS)


@pytest.mark.parametrize("jetpack", sorted(NVIDIA_OPENCV))
def test_jetpack_takes_nvidias_opencv(deb: Path, tmp_path: Path, jetpack: str) -> None:
    release, version = NVIDIA_OPENCV[jetpack]
    # NVIDIA's OpenCV installed (JetPack's default): no other OpenCV comes along
    pulled = stub_apt(tmp_path / "installed", release, version, installed=True).simulate(deb)
    print("\n{} with libopencv-python: OpenCV libraries pulled: {}".format(
        jetpack, opencv(pulled)))
    assert opencv(pulled) == []
    # in NVIDIA's repository but not installed: apt takes NVIDIA's, not Ubuntu's
    pulled = stub_apt(tmp_path / "available", release, version).simulate(deb)
    assert "libopencv-python" in pulled and "python3-opencv" not in pulled
