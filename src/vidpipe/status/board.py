"""The status board: every role's live numbers as a small JSON file.

Each running role rewrites ``RUNTIME_DIR/status/ROLE-NAME.json`` (atomically:
write, then rename) about twice a second. ``vidpipe status`` and the
collector's ``/metrics`` read these files; nothing polls the journal and no
role waits on a reader. The runtime directory is a tmpfs, so ``restarts``
counts the starts of that role since boot, less one.
"""

import json
import logging
import os
import re
import time
from typing import Any, Dict, List, Optional

from vidpipe import names, safefile
from vidpipe.config.layout import board_dir

log = logging.getLogger("vidpipe.board")

MAX_ENTRY = 256 * 1024
UNITS = {"decoder": "vid-decoder@{}.service", "handler": "vid-handler@{}.service",
         "collector": "vid-collector.service"}


def unit_name(role: Any, name: Any) -> str:
    """The systemd unit of a role; "" unless role and name are valid (entries
    are files that group members could forge, and this goes to systemctl)."""
    if not isinstance(role, str) or role not in UNITS or not names.valid(name):
        return ""
    return UNITS[role].format(name)


class Board:
    """One role's entry on the board."""

    def __init__(self, runtime_dir: str, role: str, name: str) -> None:
        self.role, self.name = role, name
        self.dir = board_dir(runtime_dir)
        self.path = os.path.join(self.dir, "{}-{}.json".format(role, name))
        self.started = time.time()
        self.failed = False
        previous = read_entry(self.path)
        self.restarts = int(previous.get("restarts", -1)) + 1 if previous else 0

    def publish(self, snapshot: Dict[str, Any], state: str = "running") -> None:
        doc = {"role": self.role, "name": self.name, "unit": unit_name(self.role, self.name),
               "pid": os.getpid(), "state": state, "started": round(self.started, 3),
               "updated": round(time.time(), 3), "restarts": self.restarts,
               "cpus": sorted(os.sched_getaffinity(0))}
        doc.update(snapshot)
        try:
            os.makedirs(self.dir, exist_ok=True)
            data = json.dumps(doc, separators=(",", ":"), default=str).encode("utf-8")
            safefile.replace(self.path, data)  # group members can write here: no links
        except OSError as exc:
            if not self.failed:  # the video goes on; say it once
                self.failed = True
                log.error("cannot write status to %s: %s (vidpipe status will not show "
                          "this %s)", self.path, exc, self.role)


def read_entry(path: str, owner: Optional[int] = None) -> Dict[str, Any]:
    """One entry; ``{}`` for anything that is not a plain file (of ``owner``)
    holding a JSON object (a FIFO, a link or another user's file planted in
    the directory included)."""
    try:
        doc = json.loads(safefile.read_plain(path, MAX_ENTRY, owner=owner).decode("utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_board(runtime_dir: str) -> List[Dict[str, Any]]:
    """Every entry, with ``alive`` set from its pid; ordered decoder, handler, collector."""
    directory = board_dir(runtime_dir)
    try:
        # entries are the services' own: whoever owns the runtime directory
        # (group members may write there too, and could forge one)
        owner = os.stat(runtime_dir).st_uid
        files = sorted(n for n in os.listdir(directory) if n.endswith(".json"))
    except PermissionError:
        raise PermissionError("cannot read {}: permission denied (run as root or as a member "
                              "of group vidpipe)".format(directory)) from None
    except OSError:
        return []
    entries = []
    for file in files:
        doc = read_entry(os.path.join(directory, file), owner)
        doc["unit"] = unit_name(doc.get("role"), doc.get("name"))  # never the file's own
        if not doc["unit"]:
            continue
        doc["alive"] = doc.get("state") == "running" and pid_alive(doc.get("pid"))
        if doc.get("state") == "running" and not doc["alive"]:
            doc["state"] = "dead"  # killed without a chance to say so
        entries.append(doc)
    order = {"decoder": 0, "handler": 1, "collector": 2}
    entries.sort(key=lambda d: (order.get(d["role"], 3), _natural(str(d.get("name", "")))))
    return entries


def _natural(text: str) -> List[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"([0-9]+)", text)]
