"""What a recording keeps on disk: vidpipe's own segments under
``[collector.record] dir`` (nothing else there is ever touched), the oldest
deleted first to stay within ``max_bytes`` and ``max_age_s`` and to keep
``min_free_mb`` free."""

import logging
import os
import re
import stat
import threading
import time
from typing import Callable, List, Tuple

from vidpipe import names

log = logging.getLogger("vidpipe.recording")
_STEM = r"(?P<camera>" + names.NAME_PATTERN + r")-[0-9]{8}T[0-9]{6}Z-[0-9]{6,20}"
#: the names vidpipe gives segments: CAM/CAM-<UTC stamp>-<seq>.mp4|.h5 (processed
#: frames), CAM/CAM-<UTC stamp>-<number>.camera.mp4 (the camera's own stream,
#: vidpipe.capture.passthrough) and CAM/CAM-<UTC stamp>-<number>.clip.mp4 (an
#: event's clip of it, vidpipe.capture.clips)
SEGMENT_RE = re.compile(_STEM + r"(\.mp4|\.h5|\.camera\.mp4|\.clip\.mp4)")
#: ... and a segment being written
PART_RE = re.compile(_STEM + r"(\.part\.mp4|\.part\.h5|\.camera\.part\.mp4|\.clip\.part\.mp4)")


def own_segments(root: str) -> List[Tuple[float, str, int]]:
    """(mtime, path, size) of the segments vidpipe made under ``root``: plain
    files named by its pattern, in a real (not linked) folder of the same
    camera. Anything else there is the operator's and is never touched."""
    found = []
    try:
        folders = list(os.scandir(root))
    except OSError:
        return []
    for folder in folders:
        if not names.valid(folder.name) or not folder.is_dir(follow_symlinks=False):
            continue
        try:
            entries = list(os.scandir(folder.path))
        except OSError:
            continue
        for entry in entries:
            match = SEGMENT_RE.fullmatch(entry.name)
            if not match or match.group("camera") != folder.name:
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append((st.st_mtime, entry.path, st.st_size))
    return sorted(found)


def remove_segment(path: str) -> int:
    """Delete one of our segments, closed or being written (checked again: a
    plain file, our name)."""
    name = os.path.basename(path)
    try:
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode) or not (SEGMENT_RE.fullmatch(name)
                                                 or PART_RE.fullmatch(name)):
            log.warning("retention: %s is not a vidpipe segment any more; left alone", path)
            return 0
        os.unlink(path)
        return st.st_size
    except OSError:
        return 0


class Retention:
    """What is on disk under ``root`` and what may be deleted to make room."""

    def __init__(self, root: str, max_bytes: int, max_age_s: float, min_free_bytes: int,
                 open_bytes: Callable[[], int]) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.min_free_bytes = min_free_bytes
        self.open_bytes = open_bytes
        self.closed: List[Tuple[float, str, int]] = []  # (mtime, path, size), oldest first
        self.deleted = 0
        self.last_expiry = 0.0
        self.scan()

    def scan(self) -> None:
        """Our segments already there count (an earlier run's too); other files
        are left alone and not counted."""
        self.closed = own_segments(self.root)

    def add(self, path: str) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        self.closed.append((st.st_mtime, path, st.st_size))

    def closed_bytes(self) -> int:
        return sum(size for _m, _p, size in self.closed)

    def free_bytes(self) -> int:
        try:
            st = os.statvfs(self.root)
        except OSError:
            return 0
        return st.f_bavail * st.f_frsize

    def shortfall(self, extra: int) -> str:
        """Why ``extra`` more bytes do not fit now, in words ('' when they do)."""
        if self.closed_bytes() + self.open_bytes() + extra > self.max_bytes:
            return "a frame does not fit in record.max_bytes ({} bytes)".format(self.max_bytes)
        free = self.free_bytes()
        if free - extra < self.min_free_bytes:
            return ("{} MB free on {}, below record.min_free_mb, and no old recording left "
                    "to delete".format(free // 2 ** 20, self.root))
        return ""

    def delete_oldest(self) -> bool:
        if not self.closed:
            return False
        _mtime, path, _size = self.closed.pop(0)
        size = remove_segment(path)
        self.deleted += 1
        log.info("retention: deleted %s (%d bytes) to keep within record.max_bytes, "
                 "record.max_age_s and record.min_free_mb", path, size)
        return True

    def make_room(self, extra: int) -> str:
        """Delete old segments until ``extra`` bytes fit: '' or why they cannot."""
        while True:
            why = self.shortfall(extra)
            if not why or not self.delete_oldest():
                return why

    def expire(self, now_wall: float) -> None:
        if not self.max_age_s:
            return
        while self.closed and self.closed[0][0] < now_wall - self.max_age_s:
            self.delete_oldest()


class Keeper:
    """Retention for segments other processes write: the decoders' passthrough
    recordings. Every ``period_s`` it looks at what is on disk again and
    deletes the oldest of vidpipe's segments as :class:`Retention` does (the
    segments being written are not counted: their ``.part`` names are not
    those of closed segments)."""

    def __init__(self, root: str, max_bytes: int, max_age_s: float, min_free_bytes: int,
                 period_s: float = 10.0) -> None:
        os.makedirs(root, exist_ok=True)
        self.retention = Retention(root, max_bytes, max_age_s, min_free_bytes, lambda: 0)
        self.period_s = period_s
        self.short = ""  # why retention cannot keep the limits ("" when it can)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="retention", daemon=True)
        self.thread.start()

    def keep(self) -> None:
        self.retention.scan()
        self.retention.expire(time.time())
        self.short = self.retention.make_room(0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.keep()
            except OSError as exc:  # the folder went away, a file system error
                log.error("retention of %s: %s", self.retention.root, exc)
            self._stop.wait(self.period_s)

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5.0)
