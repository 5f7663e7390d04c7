"""CurveZMQ keys made as root are readable by the services and nobody else,
and a key the service cannot read is named as a permission problem."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from conftest import child_env
from vidpipe.link import curve

SERVICE_UID = SERVICE_GID = 65534  # stands in for the vidpipe user and group here
OTHER_UID, OTHER_GID = 65533, 65533


def as_user(uid: int, gid: int, code: str) -> subprocess.CompletedProcess:
    def drop() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    # the test's own interpreter may sit where only root can reach (pyenv's)
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    return subprocess.run([python, "-c", code], preexec_fn=drop, env=child_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=30)


@pytest.fixture
def open_dir() -> Any:
    """A directory other users can reach (pytest's tmp_path is root's 0700),
    as /etc is."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root: the key ownership test must run there")
        pytest.skip("needs root (keygen as root is what is tested)")
    path = Path(tempfile.mkdtemp(prefix="vidpipe-keys-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(str(path))


def test_keygen_as_root_gives_the_service_group_read_access_only(
        open_dir: Path, monkeypatch: Any) -> None:
    tmp_path = open_dir
    keys = tmp_path / "keys"
    monkeypatch.setattr(curve, "_service_group", lambda: SERVICE_GID)
    public, secret = curve.keygen(str(keys), "server")
    st_dir, st_secret = keys.stat(), Path(secret).stat()
    assert (st_dir.st_uid, st_dir.st_gid, st_dir.st_mode & 0o777) == (0, SERVICE_GID, 0o750)
    assert (st_secret.st_uid, st_secret.st_gid, st_secret.st_mode & 0o777) == \
        (0, SERVICE_GID, 0o640)
    read = ("import sys; sys.path.insert(0, {!r}); from vidpipe.link import curve\n"
            "print(bool(curve._load({!r}, 'pipeline.toml', 'security.server_key', True)[1]))"
            ).format(str(Path(curve.__file__).parents[2]), secret)
    service = as_user(SERVICE_UID, SERVICE_GID, read)
    assert service.returncode == 0 and service.stdout.strip() == "True", service.stderr
    other = as_user(OTHER_UID, OTHER_GID, read)
    assert other.returncode != 0 and "permission denied: {} cannot be searched".format(
        keys) in other.stderr, other.stderr
    write = "open({!r}, 'a')".format(secret)
    assert as_user(SERVICE_UID, SERVICE_GID, write).returncode != 0  # read, never change


def test_an_unreadable_key_is_named_a_permission_problem(open_dir: Path) -> None:
    tmp_path = open_dir
    keys = tmp_path / "keys"
    curve.keygen(str(keys), "server")
    curve.keygen(str(keys), "client")
    keys.chmod(0o700)  # what keygen as root made before: root:root 0700/0750
    os.chown(str(keys), 0, 0)
    config = tmp_path / "pipeline.toml"
    config.write_text('[security]\ncurve = true\nkeys_dir = "{}"\n'.format(keys))
    config.chmod(0o644)
    code = ("import sys; sys.path.insert(0, {!r}); from vidpipe.config import load_config\n"
            "load_config({!r})").format(str(Path(curve.__file__).parents[2]), str(config))
    result = as_user(SERVICE_UID, SERVICE_GID, code)
    assert result.returncode != 0
    assert "permission denied: {} cannot be searched".format(keys) in result.stderr
    assert "does not exist" not in result.stderr
