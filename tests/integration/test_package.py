"""The Debian package and its systemd units, checked with the real tools
(dpkg-buildpackage, lintian, systemd-analyze). Installing it on a running
Debian with udev and systemd is the VM system test's job."""

import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from conftest import ROOT

CLEAN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
UNITS = ["vid-decoder@.service", "vid-handler@.service", "vid-collector.service",
         "vidpipe.target"]
INSTANCES = {"vid-decoder@.service": "vid-decoder@cam0.service",
             "vid-handler@.service": "vid-handler@1.service"}


def run(cmd: List[str], **kw: object) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, env=dict(os.environ, PATH=CLEAN_PATH),
                          **kw)  # type: ignore[call-overload]


# The .deb is built by Debian 12's debhelper whatever Python runs pytest (a
# minute of the floor suites' time each); the floors test the generator's and
# the roles' code on their interpreters in tests/unit/test_accel.py and the rest
pytestmark = pytest.mark.once


@pytest.fixture(scope="module")
def unit_root(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The package unpacked over a copy of this system's stock units."""
    root = tmp_path_factory.mktemp("debroot")
    assert run(["dpkg-deb", "-x", str(deb), str(root)]).returncode == 0
    system = root / "lib" / "systemd" / "system"
    for name in os.listdir("/lib/systemd/system"):
        target = system / name
        source = Path("/lib/systemd/system") / name
        if not target.exists() and not source.is_dir():
            shutil.copy2(str(source), str(target), follow_symlinks=False)
    for template, instance in INSTANCES.items():
        shutil.copy(str(system / template), str(system / instance))
    yield root


def test_package_is_lintian_clean(deb: Path) -> None:
    result = run(["lintian", "--fail-on", "error,warning", "--pedantic", str(deb)])
    problems = [line for line in result.stdout.splitlines() if re.match(r"^[EW]: ", line)]
    assert result.returncode == 0 and problems == [], result.stdout


def test_package_contents(deb: Path) -> None:
    listing = run(["dpkg-deb", "-c", str(deb)]).stdout
    for path in ["./usr/bin/vidpipe", "./etc/vidpipe/pipeline.toml",
                 "./lib/udev/rules.d/60-vidpipe.rules", "./usr/lib/sysusers.d/vidpipe.conf",
                 "./usr/lib/tmpfiles.d/vidpipe.conf", "./usr/share/man/man1/vidpipe.1.gz",
                 "./usr/lib/python3/dist-packages/vidpipe/decoder.py",
                 "./lib/systemd/system-generators/vidpipe-generator"] + \
            ["./lib/systemd/system/" + unit for unit in UNITS]:
        assert path in listing, path
    conffiles = run(["dpkg-deb", "-I", str(deb), "conffiles"]).stdout.split()
    assert conffiles == ["/etc/vidpipe/pipeline.toml"]
    fields = run(["dpkg-deb", "-f", str(deb), "Depends", "Architecture"]).stdout
    assert "Architecture: all" in fields
    for dep in ["python3-zmq", "python3-numpy", "libopencv-python | python3-opencv",
                "python3-pyudev", "python3 (>= 3.11) | python3-tomli | python3-toml",
                "python3-sdnotify"]:
        assert dep in fields, dep
    # nothing guessed from pyproject.toml (it would ask for python3-tomli alone)
    assert "python3-tomli | python3 (>> 3.11)" not in fields


def test_maintainer_scripts_create_user_and_runtime_dir(deb: Path, tmp_path: Path) -> None:
    run(["dpkg-deb", "-e", str(deb), str(tmp_path)])
    postinst = (tmp_path / "postinst").read_text()
    assert "systemd-sysusers" in postinst and "systemd-tmpfiles" in postinst
    assert postinst.index("systemd-sysusers") < postinst.index("udevadm trigger")
    assert "try-restart 'vid-decoder@*.service' 'vid-handler@*.service'" in postinst
    postrm = (tmp_path / "postrm").read_text()
    assert "rm -rf /var/lib/vidpipe-udev /run/vidpipe" in postrm
    assert "! -name recordings" in postrm  # recordings are the operator's: kept
    sysusers = (ROOT / "debian" / "vidpipe.sysusers").read_text()
    assert re.search(r"^u\s+vidpipe\b", sysusers, re.M)
    assert re.search(r"^m\s+vidpipe\s+video\b", sysusers, re.M)


def verify(root: Path, *units: str) -> subprocess.CompletedProcess:
    return run(["systemd-analyze", "verify", "--root={}".format(root), "--man=no"]
               + list(units))


def test_units_pass_systemd_analyze_verify(unit_root: Path) -> None:
    units = [INSTANCES.get(u, u) for u in UNITS]
    result = verify(unit_root, *units)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout


def test_generator_drop_in_for_a_dla_handler_passes_verify(unit_root: Path,
                                                            tmp_path: Path) -> None:
    """The installed generator, run as systemd would (with the package's
    Python modules and a fake Jetson tree), writes a drop-in for handler 2
    only; the unit with it still verifies."""
    import sys

    from conftest import fake_jetson

    config = tmp_path / "pipeline.toml"
    config.write_text('[handlers.2]\naccelerator = "dla1"\n')
    out = tmp_path / "generated"
    generator = unit_root / "lib" / "systemd" / "system-generators" / "vidpipe-generator"
    assert os.access(str(generator), os.X_OK)
    result = subprocess.run(
        [sys.executable, str(generator), str(out), str(out), str(out)],
        env=dict(os.environ, VIDPIPE_CONFIG=str(config),
                 VIDPIPE_SYSROOT=str(fake_jetson(tmp_path / "jetson")),
                 PYTHONPATH=str(unit_root / "usr" / "lib" / "python3" / "dist-packages")),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout
    dropins = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.conf"))
    assert dropins == ["vid-collector.service.d/60-vidpipe-limits.conf",
                       "vid-decoder@.service.d/60-vidpipe-limits.conf",
                       "vid-handler@.service.d/60-vidpipe-limits.conf",
                       "vid-handler@2.service.d/50-vidpipe-accelerator.conf"]
    system = unit_root / "lib" / "systemd" / "system"
    target = system / "vid-handler@2.service.d"
    shutil.copytree(str(out / "vid-handler@2.service.d"), str(target))
    # the memory limit drop-in (as for every handler) verifies with it
    shutil.copy(str(out / "vid-handler@.service.d" / "60-vidpipe-limits.conf"), str(target))
    shutil.copy(str(system / "vid-handler@1.service"), str(system / "vid-handler@2.service"))
    try:
        result = verify(unit_root, "vid-handler@2.service")
        assert result.returncode == 0 and result.stdout.strip() == "", result.stdout
    finally:
        shutil.rmtree(str(target))
        (system / "vid-handler@2.service").unlink()


def test_verify_would_catch_a_broken_unit(unit_root: Path) -> None:
    system = unit_root / "lib" / "systemd" / "system"
    broken = system / "vid-handler@9.service"
    text = (system / "vid-handler@1.service").read_text()
    broken.write_text(text.replace("WatchdogSec=10", "WatchdogSec=ten"))
    try:
        assert "WatchdogSec" not in verify(unit_root, "vid-handler@1.service").stdout
        assert "Failed to parse sec value" in verify(unit_root, broken.name).stdout
    finally:
        broken.unlink()


def security_scores(root: Path) -> Dict[str, float]:
    scores = {}
    for unit in ("vid-decoder@cam0.service", "vid-handler@1.service",
                 "vid-collector.service"):
        result = run(["systemd-analyze", "security", "--offline=true",
                      "--root={}".format(root), unit])
        match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
        assert match, result.stdout[-2000:]
        scores[unit] = float(match.group(1))
    return scores


def test_units_are_hardened(unit_root: Path) -> None:
    scores = security_scores(unit_root)
    print("systemd-analyze security:", scores)
    assert all(score <= 3.0 for score in scores.values()), scores


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment]
    parser.read(str(ROOT / "systemd" / name))
    return parser


@pytest.mark.parametrize("name", UNITS[:3])
def test_services_keep_the_contract(name: str) -> None:
    service = unit(name)["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["RestartPreventExitStatus"] == "78"
    assert service["Restart"] == "on-failure"
    assert service["User"] == "vidpipe"
    assert service["ProtectSystem"] == "strict"
    assert service["DevicePolicy"] == "closed"
    assert service["NoNewPrivileges"] == "yes"
    assert "/run/vidpipe" in service["ReadWritePaths"]
    # libzmq's I/O thread calls pthread_setschedparam() and aborts when it fails,
    # and handlers pin themselves: the @resources syscalls must stay allowed
    text = (ROOT / "systemd" / name).read_text()
    assert "@resources" not in text.split("SystemCallFilter=~", 1)[-1].split("\n", 1)[0]
    assert unit(name)["Install"]["WantedBy"] == "vidpipe.target"
    if name.startswith("vid-decoder"):
        assert service["DeviceAllow"] == "char-video4linux rw"
        assert service["SupplementaryGroups"] == "video"
        assert "%i" in service["ExecStart"]
    else:
        assert service["PrivateDevices"] == "yes" and "DeviceAllow" not in service


def test_udev_rule_starts_a_decoder_per_capture_device() -> None:
    rule = (ROOT / "systemd" / "60-vidpipe.rules").read_text()
    assert 'ENV{ID_V4L_CAPABILITIES}!="*:capture:*", GOTO="vidpipe_end"' in rule
    assert 'PROGRAM="/usr/bin/vidpipe udev-name"' in rule
    assert 'TAG+="systemd"' in rule and 'ENV{SYSTEMD_WANTS}+="vid-decoder@%c.service"' in rule
    assert 'SYMLINK+="vidpipe/%c"' in rule
    # runs after the rules that set ID_V4L_CAPABILITIES and ID_PATH
    assert "60-persistent-v4l.rules" < "60-vidpipe.rules"


def test_man_page_shows_every_subcommand(unit_root: Path) -> None:
    """``man vidpipe`` on the installed package: made from the CLI's parser at
    build time, so every subcommand (and each option's help) is on it."""
    from vidpipe.cli import _parser
    from vidpipe.tools.manpage import subcommands

    page = unit_root / "usr" / "share" / "man" / "man1" / "vidpipe.1.gz"
    shown = subprocess.run(["man", "-l", "-P", "cat", str(page)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True,
                           env=dict(os.environ, PATH=CLEAN_PATH, MANWIDTH="200",
                                    LC_ALL="C.UTF-8"))
    assert shown.returncode == 0, shown.stdout
    text = shown.stdout
    commands = [a.dest for a in subcommands(_parser())]
    assert len(commands) >= 10
    for command in commands:
        assert re.search(r"^ +{}$".format(re.escape(command)), text, re.M), command
    assert "--prometheus" in text and "print the metrics page" in text
    docs = {p.name for p in (unit_root / "usr" / "share" / "doc" / "vidpipe" / "docs").iterdir()}
    assert {"operating.md", "architecture.md", "cameras.md"} <= docs
