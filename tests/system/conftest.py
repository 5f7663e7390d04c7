"""Helpers of the system tests (the VM and the arm64 roots); ``deb`` is in
tests/conftest.py."""

import os

import pytest


def need_root(why: str) -> None:
    """Skip without root, but fail under CI: CI runs as root, so a system test
    not running there is a failure, not a skip."""
    if os.geteuid() != 0:
        message = "{}: run as root".format(why)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
