"""Fixtures of the system tests (the VM and the arm64 roots)."""

import os
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT
from system.vm import HOST_PATH


@pytest.fixture(scope="module")
def deb() -> Path:
    """``vidpipe.deb`` built from this tree (``make deb``)."""
    result = subprocess.run(["make", "deb"], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True,
                            env=dict(os.environ, PATH=HOST_PATH), timeout=600)
    assert result.returncode == 0, result.stdout[-3000:]
    return ROOT / "vidpipe.deb"


def need_root(why: str) -> None:
    """Skip without root, but fail under CI: CI runs as root, so a system test
    not running there is a failure, not a skip."""
    if os.geteuid() != 0:
        message = "{}: run as root".format(why)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
