"""Stable camera names: config matches, registry, replug and reboot."""

from pathlib import Path
from typing import Dict, Set

from vidpipe.capture import naming
from vidpipe.config import config_from_dict


def vivid(n: int) -> Dict[str, str]:
    # the vivid test driver: both devices share ID_PATH, no serial
    return {"DEVNAME": "/dev/video{}".format(n), "ID_PATH": "platform-vivid.0",
            "ID_V4L_PRODUCT": "vivid", "ID_V4L_CAPABILITIES": ":capture:"}


def usb(serial: str, node: str, port: str = "pci-0000:00:14.0-usb-0:1:1.0") -> Dict[str, str]:
    return {"DEVNAME": node, "ID_SERIAL": "Logi_C920_" + serial, "ID_SERIAL_SHORT": serial,
            "ID_PATH": port, "ID_V4L_PRODUCT": "C920"}


def test_names_are_stable_across_replug_and_order(tmp_path: Path) -> None:
    reg = str(tmp_path / "cameras.json")
    present: Set[str] = set()

    def exists(node: str) -> bool:
        return node in present

    def plug(env: Dict[str, str]) -> str:
        present.add(env["DEVNAME"])
        return naming.assign(env, None, reg, exists)

    assert [plug(vivid(0)), plug(vivid(1))] == ["cam0", "cam1"]
    present.clear()  # rmmod vivid
    # udev may handle the second device first
    assert [plug(vivid(1)), plug(vivid(0))] == ["cam1", "cam0"]
    present.clear()
    # a USB camera with a serial gets the next name, and keeps it on another port
    assert plug(usb("A1", "/dev/video4")) == "cam2"
    present.clear()
    assert plug(usb("A1", "/dev/video0", port="pci-0000:00:14.0-usb-0:2:1.0")) == "cam2"
    assert plug(vivid(1)) == "cam1"


def test_configured_matches_win(tmp_path: Path) -> None:
    config = config_from_dict({"cameras": {
        "door": {"source": "/dev/vidpipe/door", "match_serial": "A1"},
        "yard": {"source": "/dev/vidpipe/yard", "match_by_path": "platform-vivid.0"},
        "cam0": {"source": "rtsp://cam/stream"},
    }})
    reg = str(tmp_path / "r.json")
    assert naming.assign(usb("A1", "/dev/video2"), config, reg) == "door"
    assert naming.assign(vivid(0), config, reg) == "yard"
    # cam0 belongs to an RTSP camera: a new device does not take its name
    assert naming.assign(usb("B2", "/dev/video6"), config, reg) == "cam1"


def test_by_id_match_uses_the_udev_link(tmp_path: Path) -> None:
    config = config_from_dict({"cameras": {"desk": {
        "match_by_id": "/dev/v4l/by-id/usb-Logi_C920_Z9-video-index0"}}})
    assert naming.assign(usb("Z9", "/dev/video0"), config, str(tmp_path / "r")) == "desk"


def test_a_corrupt_registry_starts_afresh(tmp_path: Path) -> None:
    reg = tmp_path / "cameras.json"
    reg.write_text("{not json")
    assert naming.assign(vivid(0), None, str(reg)) == "cam0"


def test_the_cli_prints_the_name(tmp_path: Path) -> None:
    from conftest import run_cli

    env = dict(vivid(0), VIDPIPE_CONFIG=str(tmp_path / "absent.toml"))
    result = run_cli("udev-name", "--registry", str(tmp_path / "r.json"), env=env)
    assert result.returncode == 0 and result.stdout.strip() == "cam0"
    assert "file not found (naming without it)" in result.stderr
