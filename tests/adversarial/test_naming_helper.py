"""The udev naming helper runs as root: whoever runs as ``vidpipe`` must not be
able to make it write outside its own files, block it, or smuggle text into
udev's ``SYMLINK+=`` / ``SYSTEMD_WANTS+=``.

Each test plants what an attacker could (symlinks, FIFOs, a directory they
own, hostile names in the old registry) and checks that nothing outside the
registry changed and that only rule-abiding names come out. In CI these run
as root, which is how udev runs the helper.
"""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Set

import pytest

from conftest import child_env, run_cli
from vidpipe.capture import naming


def vivid(n: int) -> Dict[str, str]:
    return {"DEVNAME": "/dev/video{}".format(n), "ID_PATH": "platform-vivid.0",
            "ID_V4L_PRODUCT": "vivid", "ID_V4L_CAPABILITIES": ":capture:"}


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file the attacker wants root to overwrite (think /etc/shadow)."""
    path = tmp_path / "victim"
    path.write_text("precious\n")
    return path


def registry_dir(tmp_path: Path) -> Path:
    path = tmp_path / "names"
    path.mkdir(mode=0o755)
    return path


def test_a_symlinked_registry_is_replaced_not_followed(tmp_path: Path, victim: Path) -> None:
    reg = registry_dir(tmp_path) / "cameras.json"
    reg.symlink_to(victim)
    assert naming.assign(vivid(0), None, str(reg)) == "cam0"
    assert victim.read_text() == "precious\n"
    assert not reg.is_symlink() and json.loads(reg.read_text())["cam0"]["node"] == "/dev/video0"


@pytest.mark.parametrize("planted", ["cameras.json.lock", "cameras.json.tmp", ".cameras.json.tmp"])
def test_symlinked_lock_or_temp_file_writes_nothing_through(tmp_path: Path, victim: Path,
                                                            planted: str) -> None:
    folder = registry_dir(tmp_path)
    (folder / planted.format(pid=os.getpid())).symlink_to(victim)
    reg = str(folder / "cameras.json")
    try:
        naming.assign(vivid(0), None, reg)
    except naming.NamingError as exc:
        assert "lock" in str(exc)  # a symlinked lock is refused, with the reason
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("planted", ["cameras.json", "cameras.json.lock"])
def test_a_fifo_never_blocks_the_helper(tmp_path: Path, planted: str) -> None:
    folder = registry_dir(tmp_path)
    os.mkfifo(str(folder / planted))
    code = ("import sys; sys.path.insert(0, {src!r}); from vidpipe.capture import naming\n"
            "try:\n print(naming.assign({env!r}, None, {reg!r}))\n"
            "except naming.NamingError as exc:\n print('refused:', exc)\n").format(
        src=str(Path(naming.__file__).parents[2]), env=vivid(0),
        reg=str(folder / "cameras.json"))
    result = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, timeout=20,
                            env=child_env())
    assert result.returncode == 0, result.stderr
    out = result.stdout.strip()
    assert out == "cam0" or (out.startswith("refused: cannot open the lock")
                             and "is not a plain file" in out), out


def test_a_directory_others_can_write_is_refused(tmp_path: Path, victim: Path) -> None:
    folder = registry_dir(tmp_path)
    if os.geteuid() == 0:
        os.chown(str(folder), 65534, 65534)  # as if the vidpipe user owned it
    else:
        folder.chmod(0o777)
    with pytest.raises(naming.NamingError) as err:
        naming.assign(vivid(0), None, str(folder / "cameras.json"))
    assert "writable by nobody else" in str(err.value) and str(folder) in str(err.value)
    assert not (folder / "cameras.json").exists()


def test_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    real = registry_dir(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(naming.NamingError) as err:
        naming.assign(vivid(0), None, str(link / "cameras.json"))
    assert "symlink" in str(err.value)
    assert not (real / "cameras.json").exists()


def test_hostile_names_in_the_old_registry_never_come_out(tmp_path: Path, victim: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """The registry of earlier versions sits where ``vidpipe`` writes: it is
    read once (without following links) and only valid names survive."""
    legacy = tmp_path / "vidpipe-owned" / "cameras.json"
    legacy.parent.mkdir()
    ident = naming.identity(vivid(0))
    usb = {"DEVNAME": "/dev/video4", "ID_SERIAL": "Logi_A1", "ID_SERIAL_SHORT": "A1"}
    hostile = {"cam0\n": {"identity": ident, "node": "/dev/video0"},
               "x\", RUN+=\"/bin/sh": {"identity": ident, "node": "/dev/video0"},
               "../../etc": {"identity": ident, "node": "/dev/video0"},
               "door": {"identity": naming.identity(usb), "node": "/dev/video4"}}
    legacy.write_text(json.dumps(hostile))
    new = registry_dir(tmp_path) / "cameras.json"
    monkeypatch.setattr(naming, "REGISTRY", str(new))
    monkeypatch.setattr(naming, "LEGACY_REGISTRY", str(legacy))
    assert naming.assign(usb, None, str(new)) == "door"  # a valid old name is kept
    assert naming.assign(vivid(0), None, str(new)) == "cam0"
    assert set(json.loads(new.read_text())) == {"door", "cam0"}
    # and a legacy registry that is a symlink is not followed at all
    new.unlink()
    legacy.unlink()
    legacy.symlink_to(victim)
    assert naming.assign(vivid(0), None, str(new)) == "cam0"
    assert victim.read_text() == "precious\n"


def test_the_cli_prints_nothing_but_a_valid_name(tmp_path: Path) -> None:
    reg = registry_dir(tmp_path) / "cameras.json"
    config = tmp_path / "pipeline.toml"
    # a section name with a trailing newline cannot be written in TOML's bare
    # keys, but a quoted one can: it must be a config error, never a name
    config.write_text('[cameras."door\\n"]\nmatch_by_path = "platform-vivid.0"\n')
    result = run_cli("udev-name", "--registry", str(reg),
                     env=dict(vivid(0), VIDPIPE_CONFIG=str(config)))
    assert result.returncode == 0 and result.stdout == "cam0\n", result
    assert "camera name must match" in result.stderr
    # a registry the helper may not use: exit 1, the reason, and no output for udev
    reg.parent.chmod(0o777)
    result = run_cli("udev-name", "--registry", str(reg), env=vivid(1))
    assert result.returncode == 1 and result.stdout == ""
    assert "cannot name /dev/video1" in result.stderr and "writable by nobody" in result.stderr


def test_random_serials_cannot_mint_names_without_bound(tmp_path: Path) -> None:
    """A device that shows a new serial on every plug gets a recycled name."""
    reg = str(registry_dir(tmp_path) / "cameras.json")
    present: Set[str] = set()
    seen = set()
    for n in range(3 * naming.MAX_NAMES):
        env = {"DEVNAME": "/dev/video0", "ID_SERIAL": "evil_{}".format(n),
               "ID_SERIAL_SHORT": str(n), "ID_PATH": "usb-0:1"}
        present.add("/dev/video0")
        seen.add(naming.assign(env, None, reg, lambda node: node in present))
        present.clear()  # unplugged again
    assert len(seen) <= naming.MAX_NAMES
    assert len(json.loads(Path(reg).read_text())) <= naming.MAX_NAMES
