"""The clip requests the collector sends a camera's decoder (event clips:
:mod:`vidpipe.outputs.clips` sends, :mod:`vidpipe.capture.clips` cuts):
their topic, the clips' names, and the check every request passes before
the decoder acts on it.

A request is two parts on a PUB/SUB link: the topic ``CAMERA/`` and one
JSON object::

    {"op": "start", "name": N, "event": ID, "label": L, "from_ns": T}
    {"op": "end", "name": N, "until_ns": T}
"""

import datetime
import json
import re
import zlib
from typing import NamedTuple, Optional

#: a closed clip: CAMERA-<UTC time of the event's start>-<CRC-32 of its id>.clip.mp4
SUFFIX = ".clip.mp4"
PART_SUFFIX = ".clip.part.mp4"
MAX_NS = 2 ** 63 - 1
MAX_EVENT_ID = 255


class Request(NamedTuple):
    op: str  # start | end
    name: str  # the clip's file name
    when_ns: int  # start: from_ns; end: until_ns
    event: str  # start: the event's id ("?" when it sent none fit to log)


def topic(camera: str) -> bytes:
    """A camera's requests' topic (the ``/`` ends it: ``cam1`` is not ``cam10``)."""
    return camera.encode() + b"/"


def clip_name(camera: str, event_id: str, start_ns: int) -> str:
    """The clip of event ``event_id``: the same name wherever it is made (a
    broker output names it in the event; the decoder writes it)."""
    stamp = datetime.datetime.fromtimestamp(max(0, start_ns) / 1e9, datetime.timezone.utc)
    return "{}-{}-{:010d}{}".format(camera, stamp.strftime("%Y%m%dT%H%M%SZ"),
                                    zlib.crc32(event_id.encode("utf-8", "replace")), SUFFIX)


def start_request(name: str, event_id: str, label: str, from_ns: int) -> bytes:
    return json.dumps({"op": "start", "name": name, "event": event_id, "label": label,
                       "from_ns": from_ns}).encode()


def end_request(name: str, until_ns: int) -> bytes:
    return json.dumps({"op": "end", "name": name, "until_ns": until_ns}).encode()


def name_rule(camera: str) -> "re.Pattern[str]":
    """The names of ``camera``'s clips, and nothing else (no path, no other camera's)."""
    return re.compile(re.escape(camera) + r"-[0-9]{8}T[0-9]{6}Z-[0-9]{10}" + re.escape(SUFFIX))


def parse(raw: bytes, names: "re.Pattern[str]") -> Optional[Request]:
    """A request off the wire, checked: ``None`` for anything else (not
    JSON, another op, a name not of ``names``, a time that is not an
    integer in range)."""
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    op, name = doc.get("op"), doc.get("name")
    when = doc.get("from_ns" if op == "start" else "until_ns")
    if op not in ("start", "end") or not isinstance(name, str) or \
            not names.fullmatch(name) or type(when) is not int or not 0 <= when <= MAX_NS:
        return None
    event = doc.get("event")
    if not isinstance(event, str) or len(event) > MAX_EVENT_ID or not event.isprintable():
        event = "?"
    return Request(op, name, when, event)
