"""Files in directories that other users can write into.

The runtime directory (``/run/vidpipe``, group ``vidpipe`` may write) and the
udev helper's registry are such places: whoever can create a file there can
plant a symlink (to make us write elsewhere), a FIFO (to block an ``open``),
or a file of their own (to feed us what they like). Everything vidpipe opens
there goes through here: no link is followed, no open blocks, only a plain
file (of ``owner``, when asked) is taken, and new files are made under a name
nobody can guess and renamed into place.
"""

import errno
import os
import secrets
import stat
from typing import Optional

MAX_READ = 1024 * 1024


class UnsafeFile(OSError):
    """The path is not a plain file we may trust; ``str()`` says why."""


def open_plain(path: str, flags: int = os.O_RDONLY, dir_fd: Optional[int] = None,
               mode: int = 0o644, owner: Optional[int] = None) -> int:
    """An fd on the plain file ``path`` (relative to ``dir_fd`` if given).

    Raises :class:`FileNotFoundError` when it is missing, :class:`UnsafeFile`
    when it is a link, a FIFO, a device, a file with other hard links, or
    (with ``owner``) another user's file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode,
                     dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the last component is a symlink
            raise UnsafeFile(exc.errno, "{} is a symlink: not followed".format(path)) from None
        raise
    info = os.fstat(fd)
    why = ""
    if not stat.S_ISREG(info.st_mode):
        why = "is not a plain file"
    elif info.st_nlink != 1:
        why = "has {} hard links".format(info.st_nlink)
    elif owner is not None and info.st_uid != owner:
        why = "belongs to uid {}, not {}".format(info.st_uid, owner)
    if why:
        os.close(fd)
        raise UnsafeFile(1, "{} {}: refused".format(path, why))
    if not flags & os.O_NONBLOCK:  # O_NONBLOCK was only for the open
        os.set_blocking(fd, True)
    return fd


def read_plain(path: str, limit: int = MAX_READ, owner: Optional[int] = None,
               dir_fd: Optional[int] = None) -> bytes:
    """At most ``limit`` bytes of the plain file ``path`` (see :func:`open_plain`)."""
    fd = open_plain(path, dir_fd=dir_fd, owner=owner)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit)


def create_new(path: str, mode: int = 0o640) -> None:
    """Make ``path`` an empty file of ours, for a writer that opens it by
    name next (a muxer): ``O_EXCL``, no link followed, so nothing another
    account planted there is written through. FileExistsError if it is there."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode))


def settle(part: str, final: str) -> int:
    """A file a writer finished under its ``part`` name: renamed to
    ``final``, its size returned; an empty one is removed (0). OSError as
    the file system says."""
    size = os.stat(part).st_size
    if size == 0:
        os.unlink(part)
    else:
        os.rename(part, final)
    return size


def replace(path: str, data: bytes, mode: int = 0o640, dir_fd: Optional[int] = None,
            sync: bool = False) -> None:
    """Put ``data`` at ``path`` atomically: a new file under an unguessable
    name (``O_EXCL``, no link followed), renamed over ``path`` (a link there
    is replaced, not followed)."""
    folder, name = os.path.split(path)
    tmp = os.path.join(folder, ".{}.{}.tmp".format(name, secrets.token_hex(6)))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode, dir_fd=dir_fd)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        try:
            os.unlink(tmp, dir_fd=dir_fd)
        except OSError:
            pass
        raise
