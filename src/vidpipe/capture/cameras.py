"""Finding V4L2 capture devices with pyudev and describing them."""

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from vidpipe.capture import v4l2

log = logging.getLogger("vidpipe.cameras")


@dataclass
class CameraDevice:
    node: str
    name: str = ""  # the vidpipe camera name udev gave it (/dev/vidpipe/NAME)
    by_id: str = ""
    by_path: str = ""
    serial: str = ""
    driver: str = ""
    card: str = ""
    formats: List[str] = field(default_factory=list)

    @property
    def best_path(self) -> str:
        """The most stable path to open: by-id, then by-path, then the node."""
        return self.by_id or self.by_path or self.node

    def as_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "node": self.node, "by_id": self.by_id, "by_path": self.by_path,
                "serial": self.serial, "driver": self.driver, "card": self.card,
                "formats": self.formats}


def _is_capture(device: Any) -> bool:
    caps = device.properties.get("ID_V4L_CAPABILITIES", "")
    return ":capture:" in caps


def _links(device: Any, prefix: str) -> str:
    for link in sorted(device.device_links):
        if link.startswith(prefix):
            return str(link)
    return ""


def from_udev(device: Any, probe: bool = True) -> CameraDevice:
    """A :class:`CameraDevice` for a pyudev ``Device`` of subsystem video4linux."""
    props = device.properties
    cam = CameraDevice(
        node=device.device_node or "",
        by_id=_links(device, "/dev/v4l/by-id/"),
        by_path=_links(device, "/dev/v4l/by-path/"),
        serial=props.get("ID_SERIAL_SHORT", "") or props.get("ID_SERIAL", ""),
    )
    if probe and cam.node:
        try:
            info = v4l2.query(cam.node)
            cam.driver, cam.card, cam.formats = info.driver, info.card, info.formats
        except OSError as exc:
            log.debug("cannot query %s: %s", cam.node, exc)
    if not cam.card:
        cam.card = props.get("ID_V4L_PRODUCT", "")
    return cam


def _node_number(node: str) -> int:
    digits = "".join(ch for ch in node if ch.isdigit())
    return int(digits) if digits else 1 << 30


def camera_names(link_dir: str = "/dev/vidpipe") -> Dict[str, str]:
    """Device node -> vidpipe camera name, from udev's /dev/vidpipe/NAME links."""
    names: Dict[str, str] = {}
    try:
        entries = sorted(os.listdir(link_dir))
    except OSError:
        return names
    for name in entries:
        names.setdefault(os.path.realpath(os.path.join(link_dir, name)), name)
    return names


def list_capture_devices(context: Optional[Any] = None, probe: bool = True) -> List[CameraDevice]:
    """Every V4L2 capture device, metadata-only nodes left out, in node order."""
    import pyudev

    context = context or pyudev.Context()
    names = camera_names()
    found = [from_udev(dev, probe) for dev in context.list_devices(subsystem="video4linux")
             if dev.device_node and _is_capture(dev)]
    for cam in found:
        cam.name = names.get(os.path.realpath(cam.node), "")
    return sorted(found, key=lambda cam: _node_number(cam.node))
