"""Who is at the other end of a loopback connection: the account that owns
the client's socket, read from the kernel's socket table (``/proc/net/tcp``
and ``tcp6``, which show the owner's uid of every socket in this network
namespace), and whether that account may see the cameras.

The preview and snapshots on 127.0.0.1 show live pictures: without a
password they are for root, the collector's own account and the members
of group ``vidpipe`` (``adduser USER vidpipe``), not for every local account.
"""

import grp
import os
import pwd
import socket
import struct
import time
from typing import Optional, Set, Tuple

GROUP = "vidpipe"
_CACHE_S = 10.0


def _hex_address(host: str, port: int) -> Optional[str]:
    """``host:port`` as /proc/net/tcp{,6} writes it (address words in host order)."""
    try:
        if ":" in host:
            packed = socket.inet_pton(socket.AF_INET6, host.split("%")[0])
            words = struct.unpack("=4I", packed)
            text = "".join("{:08X}".format(w) for w in words)
        else:
            text = "{:08X}".format(struct.unpack("=I", socket.inet_aton(host))[0])
    except (OSError, ValueError):
        return None
    return "{}:{:04X}".format(text, port)


def peer_uid(sock: socket.socket, proc: str = "/proc/net") -> Optional[int]:
    """The uid owning the client end of ``sock`` (a server-side TCP socket on
    this host), or None when it cannot be found (not local, or gone)."""
    try:
        server = sock.getsockname()[:2]
        client = sock.getpeername()[:2]
    except OSError:
        return None
    want = (_hex_address(*client), _hex_address(*server))
    if None in want:
        return None
    for table in ("tcp6", "tcp") if ":" in client[0] else ("tcp", "tcp6"):
        try:
            with open(os.path.join(proc, table), encoding="ascii") as handle:
                next(handle, None)  # the column names
                for line in handle:
                    fields = line.split()
                    if len(fields) > 7 and (fields[1], fields[2]) == want:
                        return int(fields[7])
        except (OSError, ValueError, UnicodeDecodeError):
            continue
    return None


class LocalAccounts:
    """root, this process's account and group ``vidpipe``'s members (by
    supplementary or primary group), looked up at most every 10 s."""

    def __init__(self, group: str = GROUP) -> None:
        self.group = group
        self._uids: Set[int] = set()
        self._at = float("-inf")

    def uids(self) -> Set[int]:
        now = time.monotonic()
        if now - self._at >= _CACHE_S:
            self._uids, self._at = self._lookup(), now
        return self._uids

    def _lookup(self) -> Set[int]:
        uids = {0, os.geteuid()}
        try:
            entry = grp.getgrnam(self.group)
        except KeyError:
            return uids
        for name in entry.gr_mem:
            try:
                uids.add(pwd.getpwnam(name).pw_uid)
            except KeyError:
                pass
        uids.update(p.pw_uid for p in pwd.getpwall() if p.pw_gid == entry.gr_gid)
        return uids

    def allows(self, sock: socket.socket) -> Tuple[bool, Optional[int]]:
        """(may see the cameras, the client's uid if found)."""
        uid = peer_uid(sock)
        return uid is not None and uid in self.uids(), uid
