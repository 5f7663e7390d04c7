"""The camera-name rule, in one place.

A camera name ends up in file names (``decoder-NAME.sock``, recordings under
``record_dir/NAME/``), in unit names (``vid-decoder@NAME``), in udev's
``SYMLINK+=`` and in metrics labels. Every name that comes from outside (the
config, the wire, udev's registry) must pass :func:`valid` before any of
those uses. ``re.fullmatch``, not ``match`` with ``$``: ``$`` also matches
before a trailing newline.
"""

import re

NAME_PATTERN = r"[A-Za-z0-9_-]{1,31}"
NAME_RULE = NAME_PATTERN  # as error messages show it
#: for ``.match`` callers too: ``\Z`` (not ``$``) so no trailing newline passes
NAME_RE = re.compile(r"\A" + NAME_PATTERN + r"\Z")


def valid(name: object) -> bool:
    """``name`` is a string of 1-31 letters, digits, ``_`` or ``-`` (nothing else,
    no trailing newline)."""
    return isinstance(name, str) and NAME_RE.match(name) is not None
