"""Stable camera names for V4L2 devices, assigned when udev sees them.

udev runs ``vidpipe udev-name`` for every new capture device (see
``60-vidpipe.rules``); it prints the camera name, udev links
``/dev/vidpipe/NAME`` to the device and starts ``vid-decoder@NAME``.

A device gets, in this order:

1. the name of the ``[cameras.NAME]`` section whose ``match_serial``,
   ``match_by_id`` or ``match_by_path`` fits it;
2. the name it had before: a registry in ``/var/lib/vidpipe-udev/cameras.json``
   remembers which identity (serial number, else the port path) had which
   name, so names survive reboots and replugging (at most ``MAX_NAMES``: past
   that the name of the camera gone longest is reused);
3. the lowest free ``camN``.

Two devices with the same identity (two capture nodes on one port, or the
``vivid`` test driver's instances) keep apart by the node each had last.
Calls are serialised with a lock file, since udev handles devices in parallel.

udev runs this as root. It keeps its files in a directory that only root can
write (checked on every call, and used through a directory fd), opens them
without following links or blocking on FIFOs, writes new files with
``O_EXCL`` and renames them into place, and reads back only names that pass
the camera-name rule. The ``vidpipe`` user, which owns ``/var/lib/vidpipe``,
can therefore neither redirect its writes nor smuggle text into udev's
``SYMLINK+=``.
"""

import fcntl
import json
import os
import re
import stat
import sys
import time
from typing import Callable, Dict, List, Mapping, Optional, Tuple

from vidpipe import names, safefile
from vidpipe.config import Config

#: root's own directory: the helper runs as root and never writes where the
#: ``vidpipe`` user can (``/var/lib/vidpipe`` is that user's)
REGISTRY = "/var/lib/vidpipe-udev/cameras.json"
LEGACY_REGISTRY = "/var/lib/vidpipe/cameras.json"  # read once, never written
MAX_REGISTRY_BYTES = 1024 * 1024
#: names the registry holds at most: a device that shows a new serial on every
#: plug takes the name of the camera gone longest, not a new one each time
MAX_NAMES = 32
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


class NamingError(Exception):
    """The registry cannot be used safely; the message says why."""


def _private_dir(path: str) -> int:
    """An fd on ``path``, a directory only we can write (made 0755 if missing).

    Every file below is opened relative to this fd, without following links:
    once we hold the directory, nobody else can plant anything in it, whatever
    happens to the path later."""
    try:
        os.mkdir(path, 0o755)
    except FileExistsError:
        pass
    except OSError as exc:
        raise NamingError("cannot create {}: {}".format(path, exc.strerror)) from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise NamingError("cannot open {} ({}; a symlink is refused)".format(
            path, exc.strerror)) from None
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        os.close(fd)
        raise NamingError("{} is owned by uid {} with mode {:o}: it must belong to uid {} "
                          "and be writable by nobody else".format(
                              path, info.st_uid, stat.S_IMODE(info.st_mode), os.geteuid()))
    return fd


def _parse(text: bytes) -> Dict[str, Dict[str, str]]:
    """Registry entries whose name passes the camera-name rule and whose
    fields are strings; anything else in the file is ignored."""
    try:
        data = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: Dict[str, Dict[str, str]] = {}
    for name, rec in data.items():
        if names.valid(name) and isinstance(rec, dict) and \
                isinstance(rec.get("identity"), str) and isinstance(rec.get("node", ""), str):
            out[name] = {k: str(v)[:256] for k, v in rec.items()
                         if k in ("identity", "node", "seen")}
    return out


def _read(name: str, dir_fd: Optional[int], shown: str) -> Dict[str, Dict[str, str]]:
    """The entries of the registry ``name`` (relative to ``dir_fd``); ``{}``
    when it is missing, unreadable or not a plain file (said on stderr)."""
    try:
        return _parse(safefile.read_plain(name, MAX_REGISTRY_BYTES, dir_fd=dir_fd))
    except FileNotFoundError:
        return {}
    except OSError as exc:
        print("vidpipe: ignoring the registry {}: {}".format(shown, exc), file=sys.stderr)
        return {}


class Registry:
    """``cameras.json`` in a directory only the helper's user (root) writes,
    used under a lock (udev names devices in parallel)."""

    def __init__(self, path: str) -> None:
        self.dir, self.name = os.path.split(os.path.abspath(path))
        self.dir_fd = -1
        self.lock_fd = -1

    def __enter__(self) -> "Registry":
        self.dir_fd = _private_dir(self.dir)
        try:
            self.lock_fd = safefile.open_plain(self.name + ".lock", os.O_RDWR | os.O_CREAT,
                                               self.dir_fd, 0o600)
        except OSError as exc:
            os.close(self.dir_fd)
            raise NamingError("cannot open the lock {}: {}".format(
                os.path.join(self.dir, self.name + ".lock"), exc.strerror)) from None
        fcntl.flock(self.lock_fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.lock_fd)
        os.close(self.dir_fd)

    def load(self) -> Dict[str, Dict[str, str]]:
        data = _read(self.name, self.dir_fd, os.path.join(self.dir, self.name))
        if not data and os.path.join(self.dir, self.name) == REGISTRY:
            # names given by earlier versions, kept: read (as hostile input), never written
            data = _read(LEGACY_REGISTRY, None, LEGACY_REGISTRY)
        return data

    def save(self, data: Dict[str, Dict[str, str]]) -> None:
        """Write a new file (``O_EXCL``, never through a link) and rename it over
        the old one."""
        text = json.dumps(data, indent=1, sort_keys=True).encode("utf-8")
        safefile.replace(self.name, text, 0o644, dir_fd=self.dir_fd, sync=True)
        os.fsync(self.dir_fd)


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
    with Registry(registry) as reg:
        data = reg.load()
        chosen = _choose(data, ident, node, config, node_exists)
        data[chosen] = {"identity": ident, "node": node, "seen": str(int(time.time()))}
        reg.save(data)
    return chosen


def _choose(data: Dict[str, Dict[str, str]], ident: str, node: str, config: Optional[Config],
            node_exists: Callable[[str], bool]) -> str:
    mine = sorted((n for n, rec in data.items() if rec.get("identity") == ident),
                  key=_camera_number)
    # the name this very node had, else one whose last node is gone
    for candidate in mine:
        if data[candidate].get("node") == node:
            return candidate
    for candidate in mine:
        other = data[candidate].get("node", "")
        if not other or not node_exists(other):
            return candidate
    reserved = set(_reserved(config))
    if len(data) >= MAX_NAMES:
        # gone: its node is no more, or is now this device's
        gone = [n for n, rec in data.items() if n not in reserved and (
            not rec.get("node") or rec["node"] == node or not node_exists(rec["node"]))]
        if not gone:
            raise NamingError("{} cameras are named and present: no name for {} "
                              "(identity {})".format(len(data), node, ident))
        oldest = min(gone, key=lambda n: (_seen(data[n]), _camera_number(n)))
        print("vidpipe: {} names in the registry; {} (last seen {}) goes to {}".format(
            len(data), oldest, data[oldest].get("seen", "?"), node), file=sys.stderr)
        del data[oldest]
        return oldest
    taken = set(data) | reserved
    number = 0
    while "cam{}".format(number) in taken:
        number += 1
    return "cam{}".format(number)


def _seen(rec: Dict[str, str]) -> int:
    try:
        return int(rec.get("seen", "0"))
    except ValueError:
        return 0


def device_for(name: str, link_dir: str = LINK_DIR) -> Optional[str]:
    """``/dev/vidpipe/NAME`` when udev has made that link."""
    path = os.path.join(link_dir, name)
    return path if os.path.exists(path) else None
