"""Stable camera names for V4L2 devices, assigned when udev sees them.

udev runs ``vidpipe udev-name`` for every new capture device (see
``60-vidpipe.rules``); it prints the camera name, udev links
``/dev/vidpipe/NAME`` to the device and starts ``vid-decoder@NAME``.

A device gets, in this order:

1. the name of the ``[cameras.NAME]`` section whose ``match_serial``,
   ``match_by_id`` or ``match_by_path`` fits it;
2. the name it had before: a registry in ``/var/lib/vidpipe/cameras.json``
   remembers which identity (serial number, else the port path) had which
   name, so names survive reboots and replugging;
3. the lowest free ``camN``.

Two devices with the same identity (two capture nodes on one port, or the
``vivid`` test driver's instances) keep apart by the node each had last.
Calls are serialised with a lock file, since udev handles devices in parallel.
"""

import fcntl
import json
import os
import re
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from vidpipe.config import Config

REGISTRY = "/var/lib/vidpipe/cameras.json"
LINK_DIR = "/dev/vidpipe"
_SAFE = re.compile(r"[^A-Za-z0-9_.:-]")


def identity(env: Mapping[str, str]) -> str:
    """What identifies a camera across replugs: its serial, else its port."""
    serial = env.get("ID_SERIAL_SHORT", "")
    if serial:
        return "serial:" + _SAFE.sub("_", env.get("ID_SERIAL", "") or serial)
    path = env.get("ID_PATH", "") or "unknown"
    product = env.get("ID_V4L_PRODUCT", "")
    return "path:" + _SAFE.sub("_", "{}:{}".format(path, product))


def _links(env: Mapping[str, str]) -> List[str]:
    links = env.get("DEVLINKS", "").split()
    serial, path = env.get("ID_SERIAL", ""), env.get("ID_PATH", "")
    index = env.get("VIDPIPE_INDEX", "0")
    if serial:
        links.append("/dev/v4l/by-id/usb-{}-video-index{}".format(serial, index))
    if path:
        links.append("/dev/v4l/by-path/{}-video-index{}".format(path, index))
    return links


def configured_name(config: Optional[Config], env: Mapping[str, str]) -> Optional[str]:
    """The configured camera whose match_* keys fit this device."""
    if config is None:
        return None
    links = _links(env)
    serials = {env.get("ID_SERIAL_SHORT", ""), env.get("ID_SERIAL", "")} - {""}
    for name, cam in sorted(config.cameras.items()):
        if cam.match_serial and cam.match_serial in serials:
            return name
        if cam.match_by_id and cam.match_by_id in links:
            return name
        if cam.match_by_path and (cam.match_by_path == env.get("ID_PATH")
                                  or cam.match_by_path in links):
            return name
    return None


def _reserved(config: Optional[Config]) -> List[str]:
    """Names udev must not hand out: cameras configured with their own source."""
    if config is None:
        return []
    return [name for name, cam in config.cameras.items()
            if (cam.source != "auto" and not cam.source.startswith(LINK_DIR + "/"))
            or cam.match_serial or cam.match_by_id or cam.match_by_path]


def _load(path: str) -> Dict[str, Dict[str, str]]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)}


def _save(path: str, data: Dict[str, Dict[str, str]]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, sort_keys=True)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _camera_number(name: str) -> Tuple[int, str]:
    match = re.match(r"^cam([0-9]+)$", name)
    return (int(match.group(1)), name) if match else (1 << 30, name)


def assign(env: Mapping[str, str], config: Optional[Config] = None,
           registry: str = REGISTRY,
           node_exists: Callable[[str], bool] = os.path.exists) -> str:
    """The camera name for the device described by udev's ``env``."""
    node = env.get("DEVNAME", "")
    name = configured_name(config, env)
    if name:
        return name
    ident = identity(env)
    os.makedirs(os.path.dirname(registry) or ".", exist_ok=True)
    with open(registry + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = _load(registry)
        mine = sorted((n for n, rec in data.items() if rec.get("identity") == ident),
                      key=_camera_number)
        chosen = None
        # the name this very node had, else one whose last node is gone
        for candidate in mine:
            if data[candidate].get("node") == node:
                chosen = candidate
                break
        if chosen is None:
            for candidate in mine:
                other = data[candidate].get("node", "")
                if not other or not node_exists(other):
                    chosen = candidate
                    break
        if chosen is None:
            taken = set(data) | set(_reserved(config))
            number = 0
            while "cam{}".format(number) in taken:
                number += 1
            chosen = "cam{}".format(number)
        data[chosen] = {"identity": ident, "node": node}
        _save(registry, data)
    return chosen


def device_for(name: str, link_dir: str = LINK_DIR) -> Optional[str]:
    """``/dev/vidpipe/NAME`` when udev has made that link."""
    path = os.path.join(link_dir, name)
    return path if os.path.exists(path) else None
