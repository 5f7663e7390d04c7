"""Credentials kept out of the world-readable pipeline.toml: a file of its
own (root:vidpipe 0640) holding the user name on its first line and the
password on its second, named by a ``*_credentials_file`` key (a camera's
``credentials_file``, ``mqtt_credentials_file``, ``amqp_credentials_file``).
The file is read when it is needed (a camera open, a broker connect), so
changing a password needs no config reload; its content is never logged."""

import logging
import os
from typing import Tuple
from urllib.parse import quote, urlsplit, urlunsplit

from vidpipe import safefile

log = logging.getLogger("vidpipe.credentials")
_warned: set = set()


def read_credentials(path: str) -> Tuple[str, str]:
    """(user, password) from ``path``; ValueError naming the file when it
    does not hold them. A file everyone may read is used, with a warning."""
    data = safefile.read_plain(path, limit=4096)
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = 0
    if mode & 0o004 and path not in _warned:
        _warned.add(path)
        log.warning("%s holds a password and everyone may read it: chown root:vidpipe and "
                    "chmod 0640 it", path)
    lines = data.decode("utf-8", "replace").splitlines()
    if len(lines) < 2 or not lines[0].strip():
        raise ValueError("{}: expected the user name on the first line and the password on "
                         "the second".format(path))
    return lines[0].strip(), lines[1].rstrip("\r\n")


def with_credentials(url: str, path: str) -> str:
    """``url`` with the user and password from ``path`` as its user part
    (replacing any there), each percent-encoded."""
    user, password = read_credentials(path)
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = "{}:{}@{}".format(quote(user, safe=""), quote(password, safe=""), host)
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
