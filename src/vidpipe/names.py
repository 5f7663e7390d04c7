"""The rules for names and text from outside, in one place: camera names,
detection labels, one-line text.

The camera-name rule:

A camera name ends up in file names (``decoder-NAME.sock``, recordings under
``record_dir/NAME/``), in unit names (``vid-decoder@NAME``), in udev's
``SYMLINK+=`` and in metrics labels. Every name that comes from outside (the
config, the wire, udev's registry) must pass :func:`valid` before any of
those uses. ``re.fullmatch``, not ``match`` with ``$``: ``$`` also matches
before a trailing newline.
"""

import re
import zlib

NAME_PATTERN = r"[A-Za-z0-9_-]{1,31}"
NAME_RULE = NAME_PATTERN  # as error messages show it
#: for ``.match`` callers too: ``\Z`` (not ``$``) so no trailing newline passes
NAME_RE = re.compile(r"\A" + NAME_PATTERN + r"\Z")


def valid(name: object) -> bool:
    """``name`` is a string of 1-31 letters, digits, ``_`` or ``-`` (nothing else,
    no trailing newline)."""
    return isinstance(name, str) and NAME_RE.match(name) is not None


# ---------------------------------------------------------------- labels

LABEL_MAX = 40
LABEL_RULE = "[A-Za-z0-9_-]{{1,{}}}".format(LABEL_MAX)
_LABEL_RE = re.compile(r"\A[A-Za-z0-9_-]{1,%d}\Z" % LABEL_MAX)
_NOT_LABEL = re.compile(r"[^A-Za-z0-9_-]+")
#: what a detection without a usable label is called
NO_LABEL = "object"


def label(raw: object) -> str:
    """What a stage called a thing it found, in the form every output can
    carry: an MQTT topic level, an AMQP routing-key word, part of an event
    id (AMQP's ``message_id`` is at most 255 bytes), a metrics label.

    A label of the rule (:data:`LABEL_RULE`) is kept as it is; spaces become
    ``_`` (COCO's ``traffic light`` is ``traffic_light``). Anything else --
    other characters, a longer label, ``#``/``+``/``/``, control characters,
    lone surrogates -- becomes its runs of allowed characters joined by
    ``_``, cut to 31, with ``-`` and 8 hex digits of its CRC-32, so two
    different hostile labels stay two labels. Never raises; what it returns
    is of the rule, so it returns that again (idempotent)."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = str(raw)  # a class number
    if not isinstance(raw, str):
        return NO_LABEL
    text = raw
    spaced = text.replace(" ", "_")
    if _LABEL_RE.match(spaced):
        return spaced
    data = text.encode("utf-8", "surrogatepass")
    base = _NOT_LABEL.sub("_", text).strip("_")[:LABEL_MAX - 9] or "label"
    return "{}-{:08x}".format(base, zlib.crc32(data))


def one_line(text: object, limit: int = 200) -> str:
    """``text`` as one line of printable characters of at most ``limit``
    (each control character, line break or lone surrogate shown as ``?``):
    for what reaches systemd's STATUS, a log line or a terminal from text a
    peer chose (a broker's close reason, a status file)."""
    text = text if isinstance(text, str) else str(text)
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= limit else text[:max(0, limit - 3)] + "..."
